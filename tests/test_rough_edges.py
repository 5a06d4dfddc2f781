"""What a new user trips over first (issue 16 item 6), each pinned by a test.

The moved-GPU rule's layout case is tested with its two users: tests/test_diff.py (diff) and
tests/test_replan.py (re-planning's cap).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import EXAMPLES, ROOT

from planner.inputs.cluster import load_cluster

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "num_hidden_layers": 22,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}


def test_a_nested_section_of_the_wrong_type_names_no_internal_class(run_cli, write_yaml) -> None:
    """pydantic says "a valid dictionary or instance of WorkloadSpec"; users never wrote a WorkloadSpec."""
    tiny = (EXAMPLES / "tiny.yaml").read_text()
    workload = "workload: {prompt_tokens: 1024, output_tokens: 256, slo: {ttft: 2s, tpot: 100ms}}"
    assert workload in tiny
    for replacement, message in (
        ("workload: 3", "workload: Input should be a valid dictionary (got 3)"),
        (workload.replace("{ttft: 2s, tpot: 100ms}", "[2s]"), "workload.slo: Input should be a valid dictionary"),
    ):
        result = run_cli("validate", write_yaml(tiny.replace(workload, replacement)))
        assert result.exit_code == 2
        assert message in result.stderr
        assert "Spec" not in result.stderr and "instance of" not in result.stderr


def test_solve_says_what_it_tried_in_words(run_cli, tmp_path) -> None:
    first = run_cli("solve", EXAMPLES / "tiny.yaml", "-o", tmp_path / "a.yaml", "--time-limit", "20", "--no-verify")
    assert first.exit_code == 0, first.output
    line = next(line for line in first.stdout.splitlines() if line.startswith("solved in"))
    assert re.search(r"replica counts tried: \d+(, \d+)*\)$", line), line
    again = run_cli("solve", EXAMPLES / "tiny.yaml", "--baseline", tmp_path / "a.yaml", "-o", tmp_path / "b.yaml",
                    "--time-limit", "3")  # fmt: skip
    line = next(line for line in again.stdout.splitlines() if line.startswith("solved in"))
    words = line.replace(str(tmp_path), "")  # the plan's path may contain anything
    assert "[]" not in words and "tried" not in words  # re-planning starts from the plan: no replica counts tried
    assert "GPUs moved from" in line


def test_model_path_of_a_config_json_does_not_depend_on_the_working_directory(tmp_path, catalog) -> None:
    folder = tmp_path / "models" / "tiny-llama"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    spec = yaml.safe_load((EXAMPLES / "tiny.yaml").read_text()) | {"model": "models/tiny-llama/config.json"}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(spec))
    seen = set()
    for cwd in (tmp_path, tmp_path / "models", ROOT):
        relative = os.path.relpath(tmp_path / "cluster.yaml", cwd)
        seen.add(
            subprocess.run(
                [sys.executable, "-c", f"import planner; print(planner.load_cluster({relative!r}).model.hf_id)"],
                cwd=cwd, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )  # fmt: skip
    assert seen == {str(folder.resolve())}
    assert load_cluster(tmp_path / "cluster.yaml", catalog).model.hf_id == str(folder.resolve())


def test_dry_run_says_node_names_become_addresses(tmp_path) -> None:
    plan = ROOT / "tests" / "golden" / "tiny.plan.yaml"
    code = [sys.executable, "-c", "import sys; from launcher.cli import main; main(sys.argv[1:])"]
    out = subprocess.run([*code, str(plan), "--dry-run", "--state-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Hosts below are the plan's node names: at launch each becomes the IP address of the Ray node" in out.stdout
    assert "{'" not in out.stdout  # no Python dict reprs: "placement bundle of 1 GPUs on the Ray node labelled …"
    assert "placement bundle of 1 GPUs on the Ray node labelled hexgen2.io/node=a100-0" in out.stdout


def test_hexlaunch_tables_are_not_cut_at_80_columns_in_a_pipe() -> None:
    """`hexlaunch status | less` (or > file) used to cut every row at 80 columns, losing ids and URLs."""
    url = "http://" + "b" * 80 + ":8100"
    code = (
        "from rich.table import Table; from launcher.cli import print_table\n"
        "t = Table(); t.add_column('replica', no_wrap=True); t.add_column('URL', no_wrap=True)\n"
        f"t.add_row('p-' + 'a' * 60, {url!r}); print_table(t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert url in out and "p-" + "a" * 60 in out


def test_the_demo_cluster_is_the_one_the_examples_say() -> None:
    makefile = (ROOT / "Makefile").read_text()
    demo_cluster = re.search(r"^DEMO_CLUSTER \?= (\S+)$", makefile, re.M).group(1)
    claims = [p.name for p in EXAMPLES.glob("*.yaml") if re.search(r"used by `make demo`", p.read_text())]
    assert claims in ([], [Path(demo_cluster).name])
    assert "uses examples/paper-hetero-1.yaml" in (EXAMPLES / "tiny.yaml").read_text()
    assert Path(demo_cluster).name == "paper-hetero-1.yaml"
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "hexplan draw out/plan.yaml -o out/plan.svg" in recipe
