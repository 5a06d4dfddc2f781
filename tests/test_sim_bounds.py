"""hexplan simulate/compare option bounds and time proportional to requests (issue 9 items 2 and 3).

A run is refused (exit 2, naming the option and how to raise the limit) when it would simulate
more than --max-requests requests, and non-finite or non-positive rates, durations and speedups
are refused. Idle time costs nothing: a trace spanning centuries with a handful of requests
simulates in milliseconds.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from planner.errors import InputError
from planner.inputs.workload import Trace
from planner.plans.schema import read_plan
from planner.sim.arrivals import MAX_REQUESTS, Arrivals, poisson, replay
from planner.sim.engine import Simulation
from planner.sim.metrics import Slo

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "examples" / "tiny.yaml"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.fixture
def tiny_plan(solved_plan) -> Path:
    return solved_plan(TINY, "--time-limit", "5")


def refused(run_cli, *args, fragment: str) -> str:
    began = time.monotonic()
    result = run_cli(*args)
    assert time.monotonic() - began < 5, f"{args}: {time.monotonic() - began:.1f} s"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith(("error: ", "Usage: ")) and fragment in result.stderr, result.stderr
    return result.stderr


def test_a_billion_requests_per_second_is_refused_without_allocating(run_cli, tiny_plan):
    stderr = refused(
        run_cli, "simulate", tiny_plan, "--rate", "1e9", "--duration", "10", fragment="1e+09 req/s (--rate)"
    )
    assert "10,000,000,000 simulated requests" in stderr and f"limit of {MAX_REQUESTS:,}" in stderr
    assert "--max-requests" in stderr


def test_max_requests_is_configurable(run_cli, tiny_plan):
    refused(run_cli, "simulate", tiny_plan, "--rate", "10", "--duration", "10", "--max-requests", "50",
            fragment="100 simulated requests")  # fmt: skip
    result = run_cli("simulate", tiny_plan, "--rate", "10", "--duration", "10", "--max-requests", "200", "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("option", ["--rate", "--duration", "--speedup"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_non_finite_or_non_positive_values(run_cli, tiny_plan, option, value):
    extra = ["--trace", str(ROOT / "examples/traces/AzureLLMInferenceTrace_conv.csv")] if option == "--speedup" else []
    refused(run_cli, "simulate", tiny_plan, option, value, *extra, fragment=f"{option}: expected a positive")


@pytest.mark.timeout(60)
def test_default_rate_and_sweep_are_bounded_too(run_cli, tiny_plan):
    refused(run_cli, "simulate", tiny_plan, "--duration", "1e9", fragment="simulated requests")
    refused(run_cli, "simulate", tiny_plan, "--duration", "1e9", "--sweep", fragment="simulated requests")
    refused(run_cli, "simulate", tiny_plan, "--rate", "5", "--sweep", fragment="--sweep bisects a Poisson rate itself")
    usage = run_cli("simulate", tiny_plan, "--max-requests", "0")  # typer's range check: a usage error, exit 2
    assert usage.exit_code == 2 and "--max-requests" in usage.stderr


def test_compare_is_bounded(run_cli):
    refused(run_cli, "compare", TINY, "--duration", "1e9", "--time-limit", "1", "--baselines", "vllm",
            fragment="simulated requests")  # fmt: skip
    refused(run_cli, "compare", TINY, "--time-limit", "nan", fragment="--time-limit")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_solve_time_limit_must_be_finite(run_cli, value):
    refused(run_cli, "solve", TINY, "--time-limit", value, "-q", fragment="--time-limit")


def test_poisson_refuses_before_allocating():
    with pytest.raises(InputError, match="simulated requests"):
        poisson(None, 1e9, 10.0, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="simulated requests"):
        poisson(None, 1e300, 1e300, np.random.default_rng(0))  # type: ignore[arg-type]


def test_a_speedup_that_overflows_the_span_is_refused(run_cli, tiny_plan, tmp_path):
    trace = Trace(np.array([0.0, 1e10]), np.array([10, 10]), np.array([5, 5]))
    with pytest.raises(InputError, match="--speedup"):
        replay(trace, 1e-300)
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + "0001-01-01 00:00:00,100,10\n9999-12-31 23:59:59,100,10\n")
    refused(
        run_cli, "simulate", tiny_plan, "--trace", path, "--speedup", "1e-300", fragment=f"{path}: --speedup 1e-300"
    )
    refused(run_cli, "simulate", tiny_plan, "--trace", path, "--max-requests", "1", fragment=f"{path}: the trace")


@pytest.mark.timeout(60)  # the bug this pins was a hang
def test_idle_time_is_skipped(tiny_cluster, tiny_plan):
    """Three requests over 10^11 s: simulated in time proportional to the requests, not the span."""
    plan = read_plan(tiny_plan)
    arrivals = Arrivals(np.array([0.0, 1e11, 1e11 + 0.5]), np.array([100, 100, 100]), np.array([10, 10, 10]))
    began = time.monotonic()
    result = Simulation(
        plan, tiny_cluster, arrivals, slo=Slo(5, 0.2), warmup=0, duration=1e11 + 1, drain=math.inf
    ).run()
    assert time.monotonic() - began < 2
    assert result.finished == 3
    assert len(result.queue) < 20  # samples while requests are in the system, none across the idle span
    times = [t for t, _ in result.queue]
    assert times == sorted(times) and all(t == int(t) for t in times)  # still on the 1 s grid


@pytest.mark.timeout(60)
def test_a_trace_spanning_centuries_simulates_quickly(run_cli, tiny_plan, tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text(HEADER + "0001-01-01 00:00:00,100,10\n9999-12-31 23:59:59.9999999,100,10\n")
    began = time.monotonic()
    result = run_cli("simulate", tiny_plan, "--trace", trace, "--json")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - began < 3
    assert '"finished": 2' in result.stdout


def test_no_arrivals_is_an_empty_result_not_a_crash(tiny_cluster, tiny_plan):
    empty = Arrivals(np.array([]), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    result = Simulation(
        read_plan(tiny_plan), tiny_cluster, empty, slo=Slo(5, 0.2), warmup=0, duration=10, drain=0
    ).run()
    assert (result.arrived, result.finished, result.dropped, result.unfinished) == (0, 0, 0, 0)
    assert math.isnan(result.slo_attainment)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", [1e11, 3e15, 1e300])
def test_time_resolution_at_huge_times_never_stalls(tiny_cluster, tiny_plan, start):
    """At t = 10^300 a tick is 10^284 s: transfers and samples must still end (they once looped at `now`)."""
    n = 20
    arrivals = Arrivals(start + np.arange(n) * 1e-3, np.full(n, 900), np.full(n, 50))
    began = time.monotonic()
    result = Simulation(
        read_plan(tiny_plan), tiny_cluster, arrivals, slo=Slo(5, 0.2), warmup=0, duration=start * 2, drain=math.inf
    ).run()
    assert time.monotonic() - began < 10
    assert result.finished == n  # none dropped: each went through prefill, a KV transfer and decode
