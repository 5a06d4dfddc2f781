"""planner.sim.sweeps: the deadline a run needs for an attainment (`deadline_scale`, benchmarks/paper.py's
"deadline_x"), on hand-made request records whose scales are worked out in the comments; the defaults of the runs
built on the simulator (warm-up, drain, the replay's window, the saturation load, planner.simulate's 300 s), on a
one-replica plan; and goodput's bisection against a stand-in run whose knee is known."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from builders import cluster, draft_plan, node, replica

import planner
from planner.errors import InputError
from planner.sim import sweeps
from planner.sim.arrivals import Arrivals
from planner.sim.entities import Request
from planner.sim.metrics import Slo, summarise
from planner.sim.sweeps import NO_SLO, deadline_scale, saturation, simulate_rate, simulate_replay


def record(i: int, arrival: float, first: float, finish: float, output: int = 11) -> Request:
    r = Request(i, arrival, 100, output)
    r.first_token, r.finish = first, finish
    return r


def result_of(requests: list[Request], slo: Slo | None):
    return summarise(
        requests, warmup=10.0, duration=20.0, slo=slo, preemptions=0, replica_utilisation={}, link_utilisation={},
        queue=[], sim_seconds=30.0,
    )  # fmt: skip


RECORDS = [
    record(0, 5.0, 50.0, 60.0),  # arrives before the window: not sampled (its scale would be 45)
    record(1, 10.0, 10.5, 12.5),  # TTFT 0.5 → 0.5×; TPOT 2 / 10 = 0.2 → 2×: needs 2×
    record(2, 20.0, 90.0, 99.0),  # arrives at the window's end: not sampled
    record(3, 11.0, -1.0, -1.0),  # unfinished: no deadline suffices (inf)
    record(4, 12.0, 12.75, 12.75, output=1),  # one token: TTFT 0.75 → 0.75×, no TPOT
    record(5, 13.0, 16.0, 16.5),  # TTFT 3 → 3×; TPOT 0.05 → 0.5×: needs 3×
]


def test_the_deadline_needed_is_the_attainment_quantile_of_each_requests_worst_ratio() -> None:
    """Scales of the sampled requests: 2, inf, 0.75, 3 → sorted 0.75, 2, 3, inf; the "higher" quantile at q is the
    element at index ceil(q · 3)."""
    result = result_of(RECORDS, Slo(1.0, 0.1))
    assert deadline_scale(result, 0.0) == 0.75
    assert deadline_scale(result, 0.3) == 2.0
    assert deadline_scale(result, 0.5) == 3.0
    assert deadline_scale(result, 0.66) == 3.0
    assert deadline_scale(result, 0.9) == math.inf


def test_an_unset_bound_does_not_count() -> None:
    """TTFT alone (1 s): 0.5, inf, 0.75, 3 → the median ("higher") is 3, the lowest 0.5; TPOT alone (0.1 s): 2, inf,
    0 (one token: nothing to meet), 0.5 → sorted 0, 0.5, 2, inf."""
    ttft_only = result_of(RECORDS, Slo(1.0, None))
    assert deadline_scale(ttft_only, 0.0) == 0.5 and deadline_scale(ttft_only, 0.5) == 3.0
    tpot_only = result_of(RECORDS, Slo(None, 0.1))
    assert [deadline_scale(tpot_only, q) for q in (0.0, 0.2, 0.5, 0.9)] == [0.0, 0.5, 2.0, math.inf]


def test_a_two_token_request_has_a_tpot_and_time_zero_is_a_finish() -> None:
    """Window [0, 20): a two-token request (TPOT = its one decode gap, 0.3 s → 3×) and one that ended at t = 0.0
    (0×, not unfinished): the median ("higher" of 0 and 3) is 3, the lowest 0."""
    two = record(0, 0.0, 0.1, 0.4, output=2)
    instant = record(1, 0.0, 0.0, 0.0, output=1)
    result = summarise(
        [two, instant], warmup=0.0, duration=20.0, slo=Slo(1.0, 0.1), preemptions=0, replica_utilisation={},
        link_utilisation={}, queue=[], sim_seconds=1.0,
    )  # fmt: skip
    assert deadline_scale(result, 0.0) == 0.0 and deadline_scale(result, 0.5) == pytest.approx(3.0)


def test_no_sampled_request_gives_nan_and_no_slo_is_refused() -> None:
    assert math.isnan(deadline_scale(result_of(RECORDS[:1], Slo(1.0, 0.1)), 0.9))
    with pytest.raises(InputError) as refused:
        deadline_scale(result_of(RECORDS, None), 0.9)
    assert str(refused.value).startswith(NO_SLO)


# ----------------------------------------------------------------------------- defaults of the runs


@pytest.fixture(scope="module")
def colocated():
    """llama-3.1-8b on one A100: 200-token prompts, 300 tokens out (a few seconds each)."""
    c = cluster(node("a", "A100-80G", 1), prompt=200, output=300)
    return c, draft_plan(c, replica(c, "colocated", ["a/0"]))


def test_a_rate_run_warms_up_for_a_quarter_and_drains_for_its_length(colocated) -> None:
    """40 s at 2 req/s: the window is [10, 40) (the offered rate counts the arrivals in it), and every request
    arriving before 40 s finishes within the drain (light load, seconds each); without a drain those still running
    at 40 s stay unfinished."""
    c, plan = colocated
    result = simulate_rate(plan, c, 2.0, duration=40.0, seed=3)
    times = np.array([r.arrival for r in result.requests])
    assert result.offered_rps == pytest.approx(np.sum(times >= 10.0) / 30.0)
    assert result.unfinished == 0 and result.finished == len(times) and result.sim_seconds > 40.0
    cut = simulate_rate(plan, c, 2.0, duration=40.0, seed=3, warmup=0.0, drain=0.0)
    assert cut.offered_rps == pytest.approx(len(times) / 40.0)
    assert cut.sim_seconds <= 40.0 and cut.unfinished > 0


def test_the_public_simulate_runs_five_minutes_by_default(colocated) -> None:
    """planner.simulate (hexplan simulate) without --duration: 300 s, the first 75 s warm-up."""
    c, plan = colocated
    result = planner.simulate(plan, c, rate=0.2)
    assert (result.warmup_s, result.window_end_s) == (75.0, 300.0)


def test_a_replay_samples_every_arrival_and_runs_each_to_its_end(colocated) -> None:
    """Arrivals at 0, 3 and 6 s: the window is [0, 6 + 1e-9), all three sampled (3 / 6 s offered)."""
    c, plan = colocated
    arrivals = Arrivals(np.array([0.0, 3.0, 6.0]), np.full(3, 200), np.full(3, 50))
    result = simulate_replay(plan, c, arrivals, seed=0)
    assert result.offered_rps == pytest.approx(3 / 6.0)
    assert result.finished == 3 and result.sim_seconds > 6.0


def test_saturation_offers_half_again_the_plans_rate_without_a_drain(colocated) -> None:
    c, plan = colocated
    result = saturation(plan, c, duration=20.0, seed=1)
    assert result.offered_rps == pytest.approx(1.5 * plan.summary.throughput_rps, rel=0.2)
    assert result.sim_seconds <= 20.0 and result.unfinished > 0


# ----------------------------------------------------------------------------- goodput's bisection, on a fake run


def fake_runs(knee: float, attainment: float = 0.9):
    """A stand-in for simulate_rate: attainment exactly `attainment` up to `knee` req/s, 0 above; records rates."""
    rates: list[float] = []

    def run(plan, cluster, rate, **_options):
        rates.append(rate)
        return SimpleNamespace(slo_attainment=attainment if rate <= knee else 0.0)

    return run, rates


def plan_of(throughput: float):
    return SimpleNamespace(summary=SimpleNamespace(throughput_rps=throughput))


def test_goodput_bisects_seven_times_up_to_a_fifth_above_the_plans_rate(monkeypatch) -> None:
    """high = 1.2 × 10 = 12 req/s; a knee at 11.99 (attainment exactly the SLO's 0.9 there: met) is found as
    12 × 127/128 after 7 halvings (6 would stop at 12 × 63/64, 8 at 12 × 255/256)."""
    run, rates = fake_runs(11.99)
    monkeypatch.setattr(sweeps, "simulate_rate", run)
    rate, best = sweeps.goodput(plan_of(10.0), SimpleNamespace(slo=Slo(1.0, 0.1)), duration=10.0, seed=0)
    assert rate == 12.0 * 127 / 128 and best is not None and best.slo_attainment == 0.9
    assert rates[:2] == [6.0, 9.0] and len(rates) == 7


def test_goodput_narrows_from_both_sides(monkeypatch) -> None:
    """A knee at 7.5 req/s in (0, 12]: 6 meets, 9 misses, 7.5 meets, then 8.25, 7.875, 7.6875, 7.59375 all miss."""
    run, rates = fake_runs(7.5)
    monkeypatch.setattr(sweeps, "simulate_rate", run)
    rate, _ = sweeps.goodput(plan_of(10.0), SimpleNamespace(slo=Slo(1.0, 0.1)), duration=10.0, seed=0)
    assert rate == 7.5 and rates == [6.0, 9.0, 7.5, 8.25, 7.875, 7.6875, 7.59375]


def test_goodput_is_zero_when_nothing_meets_the_slo_and_refused_without_one(monkeypatch) -> None:
    run, _ = fake_runs(0.0)
    monkeypatch.setattr(sweeps, "simulate_rate", run)
    assert sweeps.goodput(plan_of(10.0), SimpleNamespace(slo=Slo(1.0, 0.1)), duration=10.0, seed=0) == (0.0, None)
    with pytest.raises(InputError) as refused:
        sweeps.goodput(plan_of(10.0), SimpleNamespace(slo=None), duration=10.0, seed=0)
    assert str(refused.value).startswith(NO_SLO)


def test_goodput_refuses_a_sweep_beyond_the_request_limit(monkeypatch) -> None:
    """Up to 20 req/s for 100 s is 2000 requests: more than a limit of 1999, not of 2000."""
    run, _ = fake_runs(1.0)
    monkeypatch.setattr(sweeps, "simulate_rate", run)
    slo = SimpleNamespace(slo=Slo(1.0, 0.1))
    with pytest.raises(InputError):
        sweeps.goodput(plan_of(1.0), slo, duration=100.0, seed=0, high=20.0, max_requests=1999)
    assert sweeps.goodput(plan_of(1.0), slo, duration=100.0, seed=0, high=20.0, max_requests=2000, iterations=1)[0] == 0


def test_a_plan_without_flow_is_still_offered_a_positive_rate(monkeypatch) -> None:
    """The floors of 1e-6 req/s: goodput searches (0, 1.2e-6], saturation offers 1.5e-6."""
    run, rates = fake_runs(1.0)
    monkeypatch.setattr(sweeps, "simulate_rate", run)
    rate, _ = sweeps.goodput(plan_of(0.0), SimpleNamespace(slo=Slo(1.0, 0.1)), duration=1.0, seed=0, iterations=1)
    assert rate == pytest.approx(0.6e-6, rel=1e-12)
    sweeps.saturation(plan_of(0.0), SimpleNamespace(), duration=1.0, seed=0)
    assert rates[-1] == pytest.approx(1.5e-6, rel=1e-12)
