"""`hexplan predict`, `calibrate` and `profile` from the command line: contracts, bad rows, refusals."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from planner.costs.predict import predict
from planner.inputs.catalog import load_catalog
from planner.inputs.measurements import Measurement, read_jsonl
from planner.inputs.profiler import ProfileRequest, Sweep, plan_tasks

ROOT = Path(__file__).resolve().parents[1]
MEAS = ROOT / "profiles" / "measurements"
TINY_MODEL = ROOT / "tests" / "fakes" / "tiny-llama" / "config.json"

CASES = """gpu,model,tp,phase,scope,tokens,batch,context,bytes,interconnect,dtype,note
H100-SXM,llama-2-70b,4,decode,,,64,2048,,,,first
A100-80G,llama-3.1-8b,1,prefill,layers,1024,2,,,,bfloat16,second
,,8,allreduce,,,,,1048576,nvlink4,,third
L40,llama-3.1-8b,2,decode,engine,,16,1024,,,,fourth
"""


def test_single_case_prints_seconds_equal_to_the_model(run_cli):
    result = run_cli("predict", "--gpu", "H100-SXM", "--model", "llama-2-70b", "--tp", "4", "--phase", "decode",
                     "--batch", "64", "--context", "2048")  # fmt: skip
    assert result.exit_code == 0, result.output
    case = Measurement(gpu="H100-SXM", model="llama-2-70b", tp=4, phase="decode", batch=64, context=2048)
    assert float(result.stdout) == pytest.approx(predict(case, load_catalog()), rel=1e-5)


def test_single_case_json_has_terms_and_calibration(run_cli):
    result = run_cli("predict", "--gpu", "L40", "--model", "llama-3.1-8b", "--phase", "prefill", "--tokens", "512",
                     "--batch", "1", "--json")  # fmt: skip
    body = json.loads(result.stdout)
    assert body["calibration"] == "fallback from L40S"
    assert sum(body["terms_s"].values()) == pytest.approx(body["predicted_s"])
    assert body["terms_s"]["overhead"] > 0 and body["terms_s"]["lm_head"] > 0  # scope engine by default


def test_batch_carries_other_columns_and_adds_predicted_s(run_cli, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text(CASES)
    out = tmp_path / "out.csv"
    result = run_cli("predict", "--cases", cases, "-o", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["note"] for r in rows] == ["first", "second", "third", "fourth"]
    assert all(float(r["predicted_s"]) > 0 for r in rows)
    assert "L40: fallback from L40S" in result.stderr  # uncalibrated types are named
    single = run_cli("predict", "--gpu", "H100-SXM", "--model", "llama-2-70b", "--tp", "4", "--phase", "decode",
                     "--batch", "64", "--context", "2048")  # fmt: skip
    assert float(rows[0]["predicted_s"]) == pytest.approx(float(single.stdout), rel=1e-5)
    stdout = run_cli("predict", "--cases", cases)
    assert stdout.stdout.splitlines()[0] == CASES.splitlines()[0] + ",predicted_s"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("H100-SXM,llama-2-70b,4,decode,,,64,,,,,", "row 2 (line 3): phase decode needs context"),
        ("H100-SXM,llama-2-70b,four,decode,,,64,2048,,,,", "row 2 (line 3): field tp: Input should be a valid integer"),
        ("H100-SXN,llama-2-70b,4,decode,,,64,2048,,,,", "row 2 (line 3): field gpu: unknown GPU type 'H100-SXN'"),
        ("H100-SXM,llama-2-70b,4,train,,,64,2048,,,,", "row 2 (line 3): field phase: Input should be 'prefill'"),
        ("H100-SXM,llama-2-70b,4,decode,,,-1,2048,,,,", "row 2 (line 3): field batch: Input should be greater than 0"),
    ],
)
def test_a_bad_row_exits_2_naming_it(run_cli, tmp_path, row, message):
    cases = tmp_path / "cases.csv"
    cases.write_text(CASES.splitlines()[0] + "\n" + CASES.splitlines()[1] + "\n" + row + "\n")
    out = tmp_path / "out.csv"
    result = run_cli("predict", "--cases", cases, "-o", out)
    assert result.exit_code == 2
    assert f"{cases}: {message}" in result.stderr.replace("\n", " ")
    assert "Traceback" not in result.output and not out.exists()


def test_a_missing_phase_column_exits_2(run_cli, tmp_path):
    cases = tmp_path / "cases.csv"
    cases.write_text("gpu,model,tp\nH100-SXM,llama-2-70b,4\n")
    result = run_cli("predict", "--cases", cases)
    assert result.exit_code == 2 and "line 1: the header has no column phase" in result.stderr


def test_calibrate_refuses_a_poor_fit_unless_forced(run_cli, tmp_path):
    """All-reduce points of two very different machines (NVLink and PCIe) labelled as one link fit badly."""
    pcie = [json.loads(line) for line in (MEAS / "aiconfigurator-l40s.jsonl").read_text().splitlines()[1:]]
    mixed = tmp_path / "mixed.jsonl"
    lines = []
    for rec in pcie:
        if rec["phase"] == "allreduce" and rec["engine"] == "nccl" and rec["tp"] == 8:
            lines.append(json.dumps(rec | {"interconnect": "nvlink4"}))
            lines.append(json.dumps(rec | {"interconnect": "nvlink4", "measured_s": rec["measured_s"] / 20}))
    mixed.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cal.yaml"
    refused = run_cli("calibrate", mixed, "-o", out, "-q")
    assert refused.exit_code == 2 and not out.exists()
    assert "was not written" in refused.stderr and "--force" in refused.stderr
    forced = run_cli("calibrate", mixed, "-o", out, "-q", "--force")
    assert forced.exit_code == 0, forced.output and out.exists()


def test_calibrate_writes_a_file_predict_can_use(run_cli, tmp_path):
    out = tmp_path / "h200.yaml"
    result = run_cli("calibrate", MEAS / "aiconfigurator-h200-sxm.jsonl", "--kind", "gpu", "-o", out, "--id", "mine")
    assert result.exit_code == 0, result.output
    assert "per-point residuals" in result.stdout and "held-out" in result.stdout
    text = out.read_text()
    assert "id: mine" in text and "repository: https://github.com/ai-dynamo/aiconfigurator" in text
    used = run_cli("predict", "--gpu", "H200-SXM", "--model", "llama-3.1-8b", "--phase", "decode", "--batch", "8",
                   "--context", "1024", "--calibration", out, "--json")  # fmt: skip
    assert json.loads(used.stdout)["calibration"] == "calibrated"


def test_calibrate_needs_a_kind_when_files_hold_both(run_cli, tmp_path):
    result = run_cli("calibrate", MEAS / "aiconfigurator-h200-sxm.jsonl", "-o", tmp_path / "x.yaml")
    assert result.exit_code == 2 and "choose one with --kind gpu or --kind allreduce" in result.stderr


def test_vllm_bench_json_needs_and_takes_the_case_from_flags(run_cli, tmp_path):
    bench = tmp_path / "latency.json"
    bench.write_text(json.dumps({"avg_latency": 0.05, "latencies": [0.05]}))
    missing = run_cli("calibrate", bench, "-o", tmp_path / "x.yaml", "--phase", "prefill")
    assert missing.exit_code == 2 and "phase prefill needs gpu, model, tokens, batch" in missing.stderr
    ok = run_cli("calibrate", bench, bench, "-o", tmp_path / "x.yaml", "--phase", "prefill", "--gpu", "H100-SXM",
                 "--model", "llama-3.1-8b", "--tokens", "1024", "--batch", "4", "--force", "-q")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "step_overhead" in (tmp_path / "x.yaml").read_text()


def test_profile_plan_skips_what_cannot_run():
    catalog = load_catalog()
    req = ProfileRequest(
        gpu="H100-SXM", models={"llama-3.1-8b": catalog.model("llama-3.1-8b")}, tps=(1, 3, 8), device="cuda",
        dtype="bfloat16", interconnect="nvlink4", memory_bytes=80e9,
    )  # fmt: skip
    tasks = plan_tasks(req)
    assert {t.tp for t in tasks if t.kind != "allreduce"} == {1, 8}  # TP 3 divides neither heads nor FFN
    assert [t.tp for t in tasks if t.kind == "allreduce"] == [3, 8]
    assert {t.kind for t in tasks} == {"gemm", "prefill", "decode", "allreduce"}
    assert len([t for t in tasks if t.kind == "gemm"]) == 2 * len(Sweep().tokens)


def test_profile_on_cpu_writes_measurements_predict_and_calibrate_read(run_cli, tmp_path):
    pytest.importorskip("torch", reason="torch is installed by `make install` (the profile extra)")
    out = tmp_path / "cpu.jsonl"
    result = run_cli("profile", "-o", out, "--gpu", "L4", "--model", TINY_MODEL, "--tp", "1", "--tp", "2",
                     "--device", "cpu", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert {r.device for r in records} == {"cpu"}
    assert {r.phase for r in records} == {"prefill", "decode", "allreduce"}
    assert all(r.measured_s > 0 for r in records)
    assert {r.engine for r in records if r.phase == "allreduce"} == {"gloo"}
    cal = run_cli("calibrate", out, "--kind", "gpu", "-o", tmp_path / "cpu.yaml", "--force", "-q")
    assert cal.exit_code == 0, cal.output


def test_profile_without_torch_says_how_to_install(tmp_path):
    """In an interpreter where `import torch` fails (sys.modules entry None), profile exits 2 with the fix."""
    code = (
        "import sys; sys.modules['torch'] = None; from planner.cli import main; "
        f"sys.argv = ['hexplan', 'profile', '-o', {str(tmp_path / 'x.jsonl')!r}, '--gpu', 'L4', "
        f"'--model', {str(TINY_MODEL)!r}, '--device', 'cpu']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "needs PyTorch" in result.stderr and "hexgen2[profile]" in result.stderr
