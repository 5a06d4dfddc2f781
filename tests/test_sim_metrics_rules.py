"""planner.sim.metrics.summarise at its edges, against hand-made request records: the window [warmup, duration) is
closed at its start and open at its end (requests landing exactly on either side), a deadline met exactly counts as
met, an unset SLO bound does not constrain, one-token requests have no TPOT, and a run without an SLO reports no
attainment (NaN, `null` in JSON). Every expected figure is counted by hand from the records in the test."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from planner.sim.entities import Request
from planner.sim.metrics import Slo, summarise


def record(i: int, arrival: float, first: float, finish: float, output: int = 9, dropped: str = "") -> Request:
    r = Request(i, arrival, 100, output)
    r.first_token, r.finish, r.dropped = first, finish, dropped
    return r


def summary(requests: list[Request], slo: Slo | None, warmup: float = 10.0, duration: float = 20.0):
    return summarise(
        requests, warmup=warmup, duration=duration, slo=slo, preemptions=3, replica_utilisation={"r": 0.5},
        link_utilisation={"a→b": 0.25}, queue=[(1.0, 2)], sim_seconds=30.0,
    )  # fmt: skip


def test_the_window_holds_its_start_and_not_its_end() -> None:
    """Window [10, 20) (10 s). Arrivals at exactly 10 are sampled, at exactly 20 not; finishes at exactly 10 count
    as served, at exactly 20 not."""
    requests = [
        record(0, 10.0, 10.5, 20.0, output=5),  # sampled (arrives at the start); finishes at the end: not served
        record(1, 20.0, 20.5, 21.0),  # arrives at the end: not sampled
        record(2, 5.0, 5.5, 10.0, output=7),  # finishes at the start: served
        record(3, 9.0, 9.5, 12.0, output=3),  # served
    ]
    result = summary(requests, Slo(None, None))
    assert result.offered_rps == pytest.approx(1 / 10)
    assert result.throughput_rps == pytest.approx(2 / 10)
    assert result.output_tokens_per_s == pytest.approx((7 + 3) / 10)
    assert result.slo_attainment == 1.0, "the one sampled request, with no bound to miss"
    assert result.ttft_s["p50"] == pytest.approx(0.5) and result.e2e_s["p99"] == pytest.approx(10.0)


def test_a_request_finished_at_time_zero_is_finished() -> None:
    """finish = 0.0 is a time (−1 means "not finished"): counted finished and served in [0, 10)."""
    result = summary([record(0, 0.0, 0.0, 0.0, output=1)], Slo(1.0, None), warmup=0.0, duration=10.0)
    assert (result.finished, result.unfinished, result.dropped) == (1, 0, 0)
    assert result.throughput_rps == pytest.approx(1 / 10) and result.slo_attainment == 1.0


def test_deadlines_met_exactly_are_met() -> None:
    """TTFT exactly 0.5 s against ttft 0.5 s, TPOT exactly 1/8 s (1 s over 8 tokens after the first) against 0.125 s:
    both meet it; a hair over either misses (binary fractions, so the comparisons are exact)."""
    slo = Slo(0.5, 0.125)
    exact = record(0, 10.0, 10.5, 11.5, output=9)
    late_first = record(1, 11.0, 11.5 + 2**-20, 12.5, output=9)
    slow_decode = record(2, 12.0, 12.5, 13.5 + 2**-20, output=9)
    assert summary([exact], slo).slo_attainment == 1.0
    assert summary([exact, late_first, slow_decode], slo).slo_attainment == pytest.approx(1 / 3)


def test_an_unset_bound_does_not_constrain() -> None:
    """A request with a 5 s TTFT and a 1 s TPOT: meets an SLO on TPOT ≥ 1 s alone, or on TTFT ≥ 5 s alone."""
    slow = record(0, 10.0, 15.0, 23.0, output=9)  # TTFT 5, TPOT 8 / 8 = 1
    assert summary([slow], Slo(None, 1.0)).slo_attainment == 1.0
    assert summary([slow], Slo(5.0, None)).slo_attainment == 1.0
    assert summary([slow], Slo(4.0, None)).slo_attainment == 0.0
    assert summary([slow], Slo(None, 0.5)).slo_attainment == 0.0


def test_a_one_token_request_has_no_tpot_and_meets_any_tpot_bound() -> None:
    """Output 1: finished at its first token; it adds no TPOT sample (no division by its zero decode tokens) and no
    TPOT bound can fail it."""
    one = record(0, 10.0, 10.25, 10.25, output=1)
    many = record(1, 11.0, 11.25, 12.25, output=5)  # TPOT 0.25
    two = record(2, 12.0, 12.25, 12.5, output=2)  # TPOT 0.25: one token after the first
    with np.errstate(all="raise"):
        result = summary([one, many, two], Slo(None, 0.25))
    assert result.tpot_s == {"p50": 0.25, "p90": 0.25, "p99": 0.25}
    assert result.slo_attainment == 1.0
    assert result.e2e_s["p50"] == pytest.approx(0.5)
    slow_two = record(3, 13.0, 13.25, 14.25, output=2)  # TPOT 1.0: the p99 of 0.25 and 1.0
    assert summary([one, many, slow_two], Slo(None, 0.25)).tpot_s["p99"] == pytest.approx(0.25 + 0.75 * 0.99)


def test_unfinished_and_dropped_requests_are_counted_apart_and_both_miss() -> None:
    requests = [
        record(0, 10.0, 10.5, 11.0),
        record(1, 11.0, 11.5, -1.0),  # still decoding when the clock stopped
        record(2, 12.0, -1.0, -1.0, dropped="too long"),
        record(3, 13.0, -1.0, -1.0),  # still queued
    ]
    result = summary(requests, Slo(10.0, 10.0))
    assert (result.arrived, result.finished, result.dropped, result.unfinished) == (4, 1, 1, 2)
    assert result.slo_attainment == pytest.approx(1 / 4)
    assert result.ttft_s["p99"] == pytest.approx(0.5), "only finished requests have latencies"


def test_without_an_slo_there_is_no_attainment() -> None:
    result = summary([record(0, 10.0, 10.5, 11.0)], None)
    assert math.isnan(result.slo_attainment) and result.slo is None
    figures = result.to_json()
    assert figures["slo"] is None and figures["slo_attainment"] is None
    assert figures["throughput_rps"] == pytest.approx(1 / 10) and figures["arrived"] == 1


def test_json_carries_every_figure_of_the_run() -> None:
    slo = Slo(1.0, 0.5, attainment=0.95)
    result = summary([record(0, 10.0, 10.5, 11.0), record(1, 12.0, -1.0, -1.0, dropped="x")], slo)
    figures = result.to_json()
    assert figures["slo"] == {"ttft_s": 1.0, "tpot_s": 0.5, "attainment": 0.95}
    assert figures["slo_attainment"] == 0.5 and figures["offered_rps"] == pytest.approx(0.2)
    assert (figures["finished"], figures["dropped"], figures["unfinished"]) == (1, 1, 0)
    assert figures["output_tokens_per_s"] == pytest.approx(0.9) and figures["preemptions"] == 3
    assert figures["replica_utilisation"] == {"r": 0.5} and figures["link_utilisation"] == {"a→b": 0.25}
    assert figures["queue"] == [{"t": 1.0, "waiting": 2}] and figures["sim_seconds"] == 30.0
    assert figures["ttft_s"]["p50"] == pytest.approx(0.5) and figures["e2e_s"]["p50"] == pytest.approx(1.0)
    assert figures["tpot_s"]["p50"] == pytest.approx(0.5 / 8)
    assert "requests" not in figures and "Request(" not in repr(result), "per-request records stay out of both"
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.arrived = 3  # type: ignore[misc]  # a run's figures are read-only
