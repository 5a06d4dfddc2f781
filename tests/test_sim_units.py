"""The simulator's parts on their own, against hand-computed expectations: the event order, arrivals, a link
shared by concurrent transfers, a batch server's bookkeeping, vLLM-like batching/admission/preemption, and
the result's window, percentiles and SLO attainment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import cluster, node

from planner.inputs.workload import Trace
from planner.sim.arrivals import poisson, replay
from planner.sim.entities import BatchServer, Link, PrefillServer, Request
from planner.sim.events import ARRIVE, FINISH, SAMPLE, START, Event, run
from planner.sim.metrics import Slo, summarise
from planner.sim.policies import WATERMARK, plan_step, preempt_for_step, prefill_batch

# ----------------------------------------------------------------------------- events


def test_events_run_in_time_then_priority_then_scheduling_order() -> None:
    seen: list[str] = []

    def note(label: str, *then: Event):
        def action(now: float, _payload: object):
            seen.append(f"{label}@{now:g}")
            return list(then)

        return action

    later = Event(2.0, FINISH, note("spawned"))
    initial = [
        Event(1.0, SAMPLE, note("sample")),
        Event(1.0, ARRIVE, note("arrive")),
        Event(1.0, FINISH, note("finish", later)),
        Event(1.0, START, note("start")),
        Event(0.5, ARRIVE, note("first")),
        Event(1.0, FINISH, note("finish-2")),
        Event(9.0, FINISH, note("too late")),
    ]
    assert run(initial, until=5.0) == 2.0
    assert seen == ["first@0.5", "finish@1", "finish-2@1", "start@1", "arrive@1", "sample@1", "spawned@2"]


def test_an_empty_loop_stays_at_time_zero() -> None:
    assert run([], until=10.0) == 0.0


# ----------------------------------------------------------------------------- arrivals


def test_poisson_arrivals_have_the_rate_and_the_workloads_lengths() -> None:
    c = cluster(node("n"), prompt=700, output=30)
    arrivals = poisson(c.workload, 50.0, 100.0, np.random.default_rng(1))
    assert abs(len(arrivals) - 5000) < 4 * math.sqrt(5000)
    assert np.all(np.diff(arrivals.time) >= 0) and arrivals.time.min() >= 0 and arrivals.time.max() < 100
    assert set(arrivals.prompt) == {700} and set(arrivals.output) == {30}
    assert np.mean(arrivals.time < 50) == pytest.approx(0.5, abs=0.03)


def test_replay_compresses_time_and_cuts_at_the_duration() -> None:
    trace = Trace(np.array([0.0, 2.0, 4.0, 6.0]), np.array([10, 20, 30, 40]), np.array([1, 2, 3, 4]))
    fast = replay(trace, speedup=2.0)
    assert list(fast.time) == [0.0, 1.0, 2.0, 3.0] and list(fast.prompt) == [10, 20, 30, 40]
    cut = replay(trace, speedup=2.0, duration=2.0)
    assert list(cut.time) == [0.0, 1.0] and list(cut.output) == [1, 2]


# ----------------------------------------------------------------------------- a shared link


def request(i: int = 0, prompt: int = 100, output: int = 10, **fields) -> Request:
    r = Request(i, 0.0, prompt, output)
    for name, value in fields.items():
        setattr(r, name, value)
    return r


def test_concurrent_transfers_share_the_link_equally() -> None:
    """100 B/s; a 100 B and a 300 B transfer start at t = 0: 50 B/s each until the first ends at t = 2, then the
    second has the link alone and ends at t = 4 (100 + 300 bytes in 4 s)."""
    link = Link(("a", "b"), 100.0, 0.0)
    small, big = request(0), request(1)
    link.add(0.0, small, 100.0)
    link.add(0.0, big, 300.0)
    assert link.next_finish() == pytest.approx(2.0)
    assert link.pop_finished(1.0) == []
    assert link.pop_finished(2.0) == [small]
    assert link.next_finish() == pytest.approx(4.0)
    assert link.pop_finished(4.0) == [big] and not link.flows
    assert link.busy_s == pytest.approx(4.0)


def test_a_transfer_joining_later_slows_the_one_running() -> None:
    """100 B/s; 200 B from t = 0, another 200 B from t = 1: the first has 100 B left at t = 1, at 50 B/s it ends at
    t = 3; the second then has 100 B left and ends at t = 4. An idle gap is not busy time."""
    link = Link(("a", "b"), 100.0, 0.0)
    first, second = request(0), request(1)
    link.add(0.0, first, 200.0)
    version = link.version
    link.add(1.0, second, 200.0)
    assert link.version != version, "a change invalidates the finish event scheduled before it"
    assert link.next_finish() == pytest.approx(3.0)
    assert link.pop_finished(3.0) == [first]
    assert link.pop_finished(4.0) == [second]
    link.advance(10.0)
    assert link.busy_s == pytest.approx(4.0)


# ----------------------------------------------------------------------------- batch server bookkeeping


def batch_server(capacity: float = 10_000, max_seqs: int = 8, max_tokens: int = 4096) -> BatchServer:
    return BatchServer(0, "d", None, max_seqs, max_tokens, 100_000, capacity)  # type: ignore[arg-type]


def test_running_sequences_grow_one_token_per_step_and_leave_when_done() -> None:
    server = batch_server()
    a = request(0, prompt=100, output=3, generated=1)
    b = request(1, prompt=50, output=5, generated=1)
    server.join(a)
    server.join(b)
    assert server.running == 2 and server.kv_used == 101 + 51 and server.outstanding == 2
    server.step += 1
    assert server.kv_used == 102 + 52 and server.pop_done() == []
    server.step += 1
    assert server.pop_done() == [a] and a.generated == 3
    assert server.running == 1 and server.kv_used == 53
    server.step += 2
    assert server.pop_done() == [b] and b.generated == 5 and server.kv_used == 0


def test_the_newest_sequence_is_preempted_first_and_can_rejoin() -> None:
    """Preempted at step 2 with 3 of 9 tokens, back at step 4: done at step 10, not at the step 8 its first stint
    had scheduled (that entry is stale)."""
    server = batch_server()
    old, new = request(0, prompt=100, output=20, generated=1), request(1, prompt=100, output=9, generated=1)
    server.join(old)
    server.join(new)
    server.step += 2
    assert server.pop_newest() is new and new.generated == 3
    assert server.running == 1 and server.kv_used == 103
    server.step += 2
    server.join(new)
    server.step += 4
    assert server.pop_done() == [], "the stale completion at step 8 is ignored"
    server.step += 2
    assert server.pop_done() == [new] and new.generated == 9
    server.reserved = 50  # tokens of a prefill iteration under way count as used
    assert server.kv_used == (100 + 1 + 10) + 50


# ----------------------------------------------------------------------------- policies


def prefill_server(kv: float = 10_000, max_seqs: int = 4, max_tokens: int = 1000) -> PrefillServer:
    return PrefillServer(0, "p", None, max_seqs, max_tokens, 100_000, kv)  # type: ignore[arg-type]


def admit(server: BatchServer) -> tuple[list[Request], list[Request]]:
    """(requests starting prefill, requests joining with their KV) of one step (policies.plan_step)."""
    ready, started, _, _ = plan_step(server)
    return started, ready


def test_prefill_batches_fcfs_within_seqs_tokens_and_kv() -> None:
    server = prefill_server()
    server.queue.extend(request(i, prompt=300) for i in range(6))
    assert [r.id for r in prefill_batch(server)] == [0, 1, 2], "1000 tokens hold three 300-token prompts"
    server = prefill_server(max_tokens=10_000)
    server.queue.extend(request(i, prompt=300) for i in range(6))
    assert len(prefill_batch(server)) == 4, "at most max_num_seqs"
    server = prefill_server(kv=1000, max_tokens=10_000)
    server.kv_used = 500
    server.queue.extend(request(i, prompt=200) for i in range(6))
    assert len(prefill_batch(server)) == 2, "KV still waiting to be shipped leaves room for 500 tokens"


def test_limits_are_inclusive() -> None:
    """Exactly max_num_batched_tokens, exactly the free KV, exactly max_num_seqs all still fit."""
    server = prefill_server(max_tokens=1000)
    server.queue.extend(request(i, prompt=250) for i in range(5))
    assert len(prefill_batch(server)) == 4
    server = prefill_server(kv=1000, max_tokens=10_000)
    server.queue.extend(request(i, prompt=250) for i in range(5))
    assert len(prefill_batch(server)) == 4
    server = batch_server(capacity=1000, max_tokens=10_000)
    server.waiting.extend(request(i, prompt=494) for i in range(3))  # 2 × 495 = 990 = the watermark exactly
    assert len(admit(server)[0]) == 2
    server = batch_server(capacity=100_000, max_tokens=600)
    server.waiting.extend(request(i, prompt=300) for i in range(3))
    assert len(admit(server)[0]) == 2, "two 300-token contexts fill a 600-token budget exactly"


def test_a_lone_prompt_longer_than_the_token_budget_still_runs() -> None:
    server = prefill_server(max_tokens=100)
    server.queue.extend([request(0, prompt=500), request(1, prompt=10)])
    assert [r.id for r in prefill_batch(server)] == [0]


def test_admission_keeps_the_watermark_free_and_splits_prefill_from_ready() -> None:
    server = batch_server(capacity=1000)
    fresh = [request(i, prompt=300) for i in range(4)]  # each needs 301 tokens
    server.waiting.extend(fresh)
    to_prefill, ready = admit(server)
    assert to_prefill == fresh[:3] and ready == [], "3 × 301 ≤ 990 < 4 × 301"
    server = batch_server(capacity=1000)
    server.waiting.extend(request(i, prompt=330) for i in range(3))
    assert len(admit(server)[0]) == 2, f"3 × 331 = 993 would fit 1000 tokens but not the {WATERMARK:.0%} watermark"
    server = batch_server(capacity=10_000)
    shipped = request(9, prompt=300, needs_prefill=False, generated=1)
    server.waiting.extend([shipped, request(10, prompt=300)])
    to_prefill, ready = admit(server)
    assert ready == [shipped] and [r.id for r in to_prefill] == [10]


def test_admission_respects_max_seqs_with_the_running_ones_and_the_token_budget() -> None:
    server = batch_server(max_seqs=3, max_tokens=500)
    server.join(request(0, prompt=10, output=50, generated=1))
    server.waiting.extend(request(i, prompt=300) for i in range(1, 5))
    _, started, chunks, _ = plan_step(server)
    assert [r.id for r in started] == [1, 2], "one running + two started = max_num_seqs"
    assert [(r.id, n) for r, n in chunks] == [(1, 300), (2, 199)], "500 tokens − 1 decode: the second in a chunk"
    server = batch_server(max_seqs=3, max_tokens=10_000)
    server.join(request(0, prompt=10, output=50, generated=1))
    server.waiting.extend(request(i, prompt=300) for i in range(1, 5))
    assert len(admit(server)[0]) == 2, "one running + two admitted = max_num_seqs"


def test_preemption_evicts_newest_until_the_next_step_fits() -> None:
    server = batch_server(capacity=306)
    first, second, third = (request(i, prompt=100, output=50, generated=1) for i in range(3))
    for r in (first, second, third):
        server.join(r)
    assert server.kv_used == 303
    assert preempt_for_step(server) == [], "the next step needs 303 + 3 = 306 tokens: it fits exactly"
    server.step += 1
    assert preempt_for_step(server) == [third], "now 306 + 3 > 306"
    server.step += 1
    assert server.kv_used == 206 and preempt_for_step(server) == [], "206 + 2 ≤ 306"
    lone = batch_server(capacity=50)
    lone.join(request(0, prompt=100, output=50, generated=1))
    assert preempt_for_step(lone) == [], "the last sequence is never evicted"


# ----------------------------------------------------------------------------- results


def finished(i: int, arrival: float, first: float, finish: float, output: int = 11, dropped: str = "") -> Request:
    return request(i, output=output, arrival=arrival, first_token=first, finish=finish, dropped=dropped)


def test_summary_window_throughput_percentiles_and_slo() -> None:
    """Window [10, 20): requests arriving in it are the sample, requests finishing in it the throughput."""
    slo = Slo(ttft=1.0, tpot=0.1)
    requests = [
        finished(0, 5.0, 5.5, 11.0),  # before the window, finishes in it: throughput only
        finished(1, 10.0, 10.5, 11.5),  # TTFT 0.5, TPOT 0.1: meets the SLO
        finished(2, 12.0, 14.0, 15.0),  # TTFT 2.0: misses
        finished(3, 13.0, 13.2, 16.2),  # TPOT 0.3: misses
        finished(4, 14.0, -1.0, -1.0, dropped="too long"),  # dropped: a miss
        finished(5, 19.0, 19.5, 25.0),  # finishes after the window
        finished(6, 21.0, 21.5, 22.0),  # after the window
    ]
    result = summarise(
        requests, warmup=10.0, duration=20.0, slo=slo, preemptions=0, replica_utilisation={},
        link_utilisation={}, queue=[], sim_seconds=25.0,
    )  # fmt: skip
    assert result.offered_rps == pytest.approx(5 / 10)
    assert result.throughput_rps == pytest.approx(4 / 10)  # requests 0–3 finish in [10, 20)
    assert result.output_tokens_per_s == pytest.approx(4 * 11 / 10)
    assert (result.arrived, result.finished, result.dropped, result.unfinished) == (7, 6, 1, 0)
    assert result.slo_attainment == pytest.approx(1 / 5)
    assert result.ttft_s["p50"] == pytest.approx(np.percentile([0.5, 2.0, 0.2, 0.5], 50))
    assert result.tpot_s["p99"] == pytest.approx(np.percentile([0.1, 0.1, 0.3, 0.55], 99))
    assert result.e2e_s["p90"] == pytest.approx(np.percentile([1.5, 3.0, 3.2, 6.0], 90))


def test_summary_of_nothing_measured_is_nan_not_an_error() -> None:
    result = summarise(
        [finished(0, 30.0, 30.5, 31.0)], warmup=0.0, duration=10.0, slo=Slo(1.0, 0.1), preemptions=0,
        replica_utilisation={}, link_utilisation={}, queue=[], sim_seconds=31.0,
    )  # fmt: skip
    assert math.isnan(result.slo_attainment) and math.isnan(result.ttft_s["p50"])
    assert result.throughput_rps == 0.0 and result.offered_rps == 0.0


def test_an_event_at_the_end_time_still_runs() -> None:
    """`until` is inclusive: an event at exactly 5.0 runs, one just after it does not."""
    seen: list[float] = []

    def note(now: float, _payload: object):
        seen.append(now)
        return []

    assert run([Event(5.0, FINISH, note), Event(math.nextafter(5.0, 6.0), FINISH, note)], until=5.0) == 5.0
    assert seen == [5.0]
