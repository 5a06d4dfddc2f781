"""planner.sim.sweeps: the deadline a run needs for an attainment (`deadline_scale`, benchmarks/paper.py's
"deadline_x"), on hand-made request records whose scales are worked out in the comments; and the defaults of the
runs built on the simulator (warm-up, drain, the replay's window, the saturation load), on a one-replica plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import cluster, draft_plan, node, replica

from planner.errors import InputError
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


def test_no_sampled_request_gives_nan_and_no_slo_is_refused() -> None:
    assert math.isnan(deadline_scale(result_of(RECORDS[:1], Slo(1.0, 0.1)), 0.9))
    with pytest.raises(InputError) as refused:
        deadline_scale(result_of(RECORDS, None), 0.9)
    assert str(refused.value).startswith(NO_SLO)


# ----------------------------------------------------------------------------- defaults of the runs


@pytest.fixture(scope="module")
def colocated():
    c = cluster(node("a", "A100-80G", 1), prompt=200, output=4)
    return c, draft_plan(c, replica(c, "colocated", ["a/0"]))


def test_a_rate_run_warms_up_for_a_quarter_and_drains_for_its_length(colocated) -> None:
    """40 s at 2 req/s: the window is [10, 40) (the offered rate counts the arrivals in it), and every request
    arriving before 40 s finishes within the drain (light load, tens of ms each)."""
    c, plan = colocated
    result = simulate_rate(plan, c, 2.0, duration=40.0, seed=3)
    times = np.array([r.arrival for r in result.requests])
    assert result.offered_rps == pytest.approx(np.sum(times >= 10.0) / 30.0)
    assert result.unfinished == 0 and result.finished == len(times)
    cut = simulate_rate(plan, c, 2.0, duration=40.0, seed=3, warmup=0.0, drain=0.0)
    assert cut.offered_rps == pytest.approx(len(times) / 40.0)
    assert cut.sim_seconds <= 40.0


def test_a_replay_samples_every_arrival_and_runs_each_to_its_end(colocated) -> None:
    """Arrivals at 0, 3 and 6 s: the window is [0, 6 + 1e-9), all three sampled (3 / 6 s offered)."""
    c, plan = colocated
    arrivals = Arrivals(np.array([0.0, 3.0, 6.0]), np.full(3, 200), np.full(3, 50))
    result = simulate_replay(plan, c, arrivals, seed=0)
    assert result.offered_rps == pytest.approx(3 / 6.0)
    assert result.finished == 3 and result.sim_seconds > 6.0


def test_saturation_offers_half_again_the_plans_rate_without_a_drain(colocated) -> None:
    c, plan = colocated
    result = saturation(plan, c, duration=8.0, seed=1)
    assert result.offered_rps == pytest.approx(1.5 * plan.summary.throughput_rps, rel=0.2)
    assert result.sim_seconds <= 8.0
