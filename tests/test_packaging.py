"""Packaging: the wheel carries every package and the catalogue, and works from outside the repository.

The slow test builds the wheel as `pip install .` and `pip wheel .` do (build isolation), installs it
into a throwaway venv without its dependencies (they come from this venv through a .pth file, so no
index is needed and the test stays fast), and runs the installed `hexplan`/`hexlaunch` from a
directory that is not the repository.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT

import planner


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def listed_packages() -> set[str]:
    return {p.strip() for p in setup_cfg()["options"]["packages"].splitlines() if p.strip()}


def test_setup_cfg_lists_every_package() -> None:
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("planner", "launcher")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert listed_packages() == found | {"hexgen2_profiles"}
    assert "hexgen2_profiles = profiles" in setup_cfg()["options"]["package_dir"]
    assert "calibrations/*.yaml" in setup_cfg()["options.package_data"]["hexgen2_profiles"]


def test_the_catalogue_is_found_as_package_data() -> None:
    from planner.inputs.catalog import DEFAULT_PROFILES_DIR, shipped_profiles_dir

    assert shipped_profiles_dir() == DEFAULT_PROFILES_DIR
    assert (DEFAULT_PROFILES_DIR / "gpus.yaml").is_file()


def test_versions() -> None:
    for script, name in (("planner.cli", "hexplan"), ("launcher.cli", "hexlaunch")):
        code = f"import sys; sys.argv = ['{name}', '--version']; from {script} import main; main()"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout == f"{name} (hexgen2) {planner.__version__}\n"


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_repository(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("hexgen2-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"hexgen2_profiles/gpus.yaml", "hexgen2_profiles/links.yaml", "hexgen2_profiles/models.yaml"} <= names
    assert {"planner/outputs/__init__.py", "launcher/cli.py"} <= names
    calibrations = {
        f"hexgen2_profiles/calibrations/{p.name}" for p in (ROOT / "profiles" / "calibrations").glob("*.yaml")
    }
    assert calibrations <= names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # numpy, pydantic, … from this venv
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "cluster.yaml").write_text((EXAMPLES / "tiny.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*argv: str) -> str:
        done = subprocess.run(argv, cwd=outside, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    bin_dir = env_dir / "bin"
    assert run(str(bin_dir / "hexplan"), "--version") == f"hexplan (hexgen2) {planner.__version__}\n"
    assert run(str(bin_dir / "hexlaunch"), "--version") == f"hexlaunch (hexgen2) {planner.__version__}\n"
    assert "cluster.yaml is valid" in run(str(bin_dir / "hexplan"), "validate", "cluster.yaml")
    code = "import planner, planner.inputs.catalog as c; print(planner.__file__); print(c.DEFAULT_PROFILES_DIR)"
    module, profiles = run(str(python), "-c", code).split()
    assert Path(module) == site / "planner" / "__init__.py"  # the wheel's copy, not this checkout
    assert Path(profiles) == site / "hexgen2_profiles"
