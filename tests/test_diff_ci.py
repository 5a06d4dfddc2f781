"""examples/ci/replan.sh: re-solve changed cluster files, diff against the committed plan, gate.

Runs the script in a throw-away git repository holding one cluster file and its plan, on two
revisions: the committed one (nothing to do) and one where the cluster lost half its L40s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "ci" / "replan.sh"
BIN = Path(sys.executable).parent
SOLVE_ARGS = "--seed 0 --time-limit 1 --no-verify --quiet"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"} | (env or {})
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False)


def git(repo: Path, *args: str) -> str:
    result = run(repo, "git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with clusters/tiny.yaml and plans/tiny.yaml solved from it, on branch main."""
    repo = tmp_path_factory.mktemp("origin")
    (repo / "clusters").mkdir()
    shutil.copy(ROOT / "examples" / "tiny.yaml", repo / "clusters" / "tiny.yaml")
    solved = run(repo, "hexplan", "solve", "clusters/tiny.yaml", "-o", "plans/tiny.yaml", *SOLVE_ARGS.split())
    assert solved.returncode == 0, solved.stderr
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "clusters", "plans")
    git(repo, "commit", "--quiet", "-m", "base")
    return repo


@pytest.fixture
def repo(origin: Path, tmp_path: Path) -> Path:
    git(tmp_path, "clone", "--quiet", str(origin), "repo")
    return tmp_path / "repo"


def replan(repo: Path, gates: str) -> subprocess.CompletedProcess[str]:
    env = {"HEXPLAN": str(BIN / "hexplan"), "PYTHON": sys.executable, "SOLVE_ARGS": SOLVE_ARGS, "GATES": gates}
    return run(repo, "bash", str(SCRIPT), "origin/main", env=env)


def test_unchanged_cluster_is_not_resolved(repo: Path) -> None:
    result = replan(repo, "--fail-on-regression 0")
    assert result.returncode == 0, result.stderr
    assert "plans/tiny.yaml: clusters/tiny.yaml unchanged since origin/main" in result.stderr
    assert (repo / "hexplan-ci" / "report.md").read_text() == ""


def test_losing_gpus_fails_the_regression_gate(repo: Path, run_cli, tmp_path: Path) -> None:
    cluster = repo / "clusters" / "tiny.yaml"
    cluster.write_text(cluster.read_text().replace("gpu: L40, count: 4", "gpu: L40, count: 2"))
    git(repo, "commit", "--quiet", "-am", "two L40s fewer")

    result = replan(repo, "--fail-on-regression 0 --max-moved-gpus 8")
    assert result.returncode == 1, result.stdout + result.stderr
    report = (repo / "hexplan-ci" / "report.md").read_text()
    assert report.startswith("### hexplan diff FAILED: hexplan-ci/base/plans/tiny.yaml")
    assert "- **FAIL throughput regression: throughput " in report and "- **PASS moved GPUs: " in report
    assert "- GPUs no longer in the cluster (2): l40-0/2, l40-0/3" in report
    assert "gate failed: FAIL throughput regression" in result.stderr
    assert "hexplan-ci/base" not in git(repo, "worktree", "list")  # the script removes its worktree

    # The same re-plan under a loose gate passes (checked directly: no second solve).
    old_plan, old_cluster = tmp_path / "old-plan.yaml", tmp_path / "old-cluster.yaml"
    old_plan.write_text(git(repo, "show", "origin/main:plans/tiny.yaml"))
    old_cluster.write_text(git(repo, "show", "origin/main:clusters/tiny.yaml"))
    new = repo / "hexplan-ci" / "new" / "plans" / "tiny.yaml"
    loose = run_cli(
        "diff",
        old_plan,
        new,
        "--old-cluster",
        old_cluster,
        "--new-cluster",
        cluster,
        "-f",
        "markdown",
        "--fail-on-regression",
        "100",
    )
    assert loose.exit_code == 0, loose.output
    assert loose.stdout.startswith("### hexplan diff passed: ")
