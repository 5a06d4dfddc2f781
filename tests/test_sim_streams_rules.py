"""planner.sim.arrivals and planner.sim.timing at their edges: the request limit is inclusive (exactly 2 M is
allowed), Poisson arrivals start at time 0, a replay keeps the trace's times by default, refuses a speedup that
overflows only its last arrival and counts the limit after the cut; the memoised clock answers exactly what the cost
model answers for every batch (two batches with equal count and token sum but different shapes are different
questions), with the attention term of a mixed step rounded to 3 digits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import cluster, layout, node

from planner.costs.chunked import mixed_step_time
from planner.costs.replica import decode_step_time, prefill_batch_time
from planner.errors import InputError
from planner.inputs.workload import Trace
from planner.sim.arrivals import MAX_REQUESTS, check_requests, poisson, replay
from planner.sim.timing import ReplicaTiming, kv_parts


def test_the_request_limit_is_inclusive_and_two_million_by_default() -> None:
    check_requests(2_000_000.0, MAX_REQUESTS, "this run")
    with pytest.raises(InputError) as refused:
        check_requests(2_000_001.0, MAX_REQUESTS, "this run")
    assert "this run means about 2,000,001 simulated requests, more than the limit of 2,000,000" in str(refused.value)
    with pytest.raises(InputError):
        poisson(cluster(node("n")).workload, 1_000_001.0, 2.0, np.random.default_rng(0))  # 2,000,002 expected


def test_poisson_arrivals_start_at_time_zero() -> None:
    """5000 arrivals uniform over [0, 2) s: the first lands within a few ms of 0 (P(min > 10 ms) = e^-25)."""
    arrivals = poisson(cluster(node("n")).workload, 2500.0, 2.0, np.random.default_rng(4))
    assert 0.0 <= arrivals.time[0] < 0.01 and arrivals.time[-1] < 2.0


TRACE = Trace(np.array([0.0, 2.0, 4.0, 6.0]), np.array([10, 20, 30, 40]), np.array([1, 2, 3, 4]))


def test_a_replay_keeps_the_traces_times_unless_sped_up() -> None:
    assert list(replay(TRACE).time) == [0.0, 2.0, 4.0, 6.0]


def test_a_speedup_overflowing_only_the_last_arrival_is_refused() -> None:
    """At speedup 1e-300, 1e-300 s becomes 1 s (finite) but 1e10 s overflows: refused; an empty trace is not."""
    trace = Trace(np.array([0.0, 1e-300, 1e10]), np.array([10, 20, 30]), np.array([1, 2, 3]))
    with pytest.raises(InputError) as refused:
        replay(trace, speedup=1e-300)
    assert str(refused.value).startswith("--speedup 1e-300 stretches the trace's 1e+10 s beyond any time.")
    empty = Trace(np.array([]), np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert len(replay(empty, speedup=1e-300)) == 0


def test_the_request_limit_counts_the_trace_after_the_cut() -> None:
    with pytest.raises(InputError) as refused:
        replay(TRACE, max_requests=3)
    assert "the trace (within --duration) means about 4 simulated requests" in str(refused.value)
    assert list(replay(TRACE, duration=4.0, max_requests=3).time) == [0.0, 2.0]


@pytest.fixture(scope="module")
def a100():
    c = cluster(node("a", "A100-80G", 1))
    return c, layout(c.model.layers, ["a/0"])


def test_the_clock_answers_what_the_cost_model_answers_for_each_batch(a100) -> None:
    """Prompts (1000, 7000) and (4000, 4000): same count and sum, different Σs² (attention): both are asked, in either
    order, and each gets its own answer."""
    c, where = a100
    timing = ReplicaTiming(c, where)
    uneven, even = prefill_batch_time(c, where, [1000, 7000]), prefill_batch_time(c, where, [4000, 4000])
    assert uneven != even
    assert timing.prefill([1000, 7000]) == uneven and timing.prefill([4000, 4000]) == even
    assert timing.prefill([7000, 1000]) == uneven
    assert timing.decode_step(4, 500) == decode_step_time(c, where, 4, 500)
    assert timing.decode_step(4, 900) == decode_step_time(c, where, 4, 900)


def test_a_mixed_step_rounds_its_attention_term_to_three_digits(a100) -> None:
    c, where = a100
    timing = ReplicaTiming(c, where)
    assert timing.mixed_step(2, 300, 512, 262_144, 1) == mixed_step_time(c, where, 2, 300, 512, 262_000, 1)
    assert timing.mixed_step(2, 300, 512, 262_499, 1) == mixed_step_time(c, where, 2, 300, 512, 262_000, 1)
    assert timing.mixed_step(3, 300, 512, 262_144, 1) == mixed_step_time(c, where, 3, 300, 512, 262_000, 1)


def test_clocks_are_told_apart_by_identity_and_kv_parts_are_read_only(a100) -> None:
    c, where = a100
    clocks = {ReplicaTiming(c, where), ReplicaTiming(c, where)}
    assert len(clocks) == 2, "each replica has its own memo, even on equal layouts"
    (part,) = kv_parts(c, where, where)
    assert part.key == ("a", "a") and part.latency == c.node_latency("a", "a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        part.latency = 0.0  # type: ignore[misc]
    arrivals = replay(TRACE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        arrivals.time = arrivals.time[:1]  # type: ignore[misc]
