"""planner.sim.entities at its edges: when a link counts a transfer as done (within a billionth of the bytes moved,
or within one representable tick of the clock at huge times, shared among the active transfers), that every change
of a link invalidates its scheduled finish, and the batch server's aggregate figures (mean context, requests held).
Expected values are worked out by hand in each test's docstring; sizes are chosen so the margins are wide
against float rounding but narrow against a tolerance twice or half as large."""

from __future__ import annotations

import math

import pytest

from planner.sim.entities import BatchServer, Link, PrefillServer, Request


def request(i: int, prompt: int = 100, output: int = 10, generated: int = 0) -> Request:
    r = Request(i, 0.0, prompt, output)
    r.generated = generated
    return r


def test_a_transfer_within_a_billionth_of_the_bytes_moved_is_done() -> None:
    """1 B/s, 1000 B from t = 0. At 1000 − 1.5 µs it lacks 1.5e-6 B (1.5 billionths of the 1000 B moved): not done;
    at 1000 − 0.75 µs it lacks 0.75 billionths: done (rounding noise, not bytes still to send)."""
    link = Link(("a", "b"), 1.0, 0.0)
    flow = request(0)
    link.add(0.0, flow, 1000.0)
    assert link.pop_finished(1000.0 - 1.5e-6) == []
    assert link.pop_finished(1000.0 - 0.75e-6) == [flow] and link.active == 0


def test_early_on_the_tolerance_is_a_billionth_of_a_byte() -> None:
    """Before a whole byte has moved the tolerance is 1e-9 B, not a billionth of the (fewer) bytes moved: 1 B/s,
    0.5 B from t = 0; lacking 1.25e-9 B it is not done, lacking 0.75e-9 B it is."""
    link = Link(("a", "b"), 1.0, 0.0)
    flow = request(0)
    link.add(0.0, flow, 0.5)
    assert link.pop_finished(0.5 - 1.25e-9) == []
    assert link.pop_finished(0.5 - 0.75e-9) == [flow]


def test_at_huge_times_a_transfer_shorter_than_one_clock_tick_is_done() -> None:
    """At t = 2**40 s the clock's tick is 2**-12 s; 4 096 000 B/s shared by two transfers moves 500 B each per
    tick. Of 400 B and 700 B added then, the 400 B one is done at once (it would otherwise be rescheduled at the
    same `now` forever), the 700 B one not; it then has the link alone."""
    t = 2.0**40
    assert math.ulp(t) == 2.0**-12
    link = Link(("a", "b"), 4_096_000.0, 0.0)
    small, big = request(0), request(1)
    link.add(t, small, 400.0)
    link.add(t, big, 700.0)
    assert link.pop_finished(t) == [small]
    assert link.active == 1 and [f[2] for f in link.flows] == [big]


def test_every_change_of_a_link_invalidates_its_scheduled_finish() -> None:
    """The engine drops a link event whose version is stale: adding a transfer and popping finished ones (even
    none) both move the version on."""
    link = Link(("a", "b"), 100.0, 0.0)
    seen = {link.version}
    link.add(0.0, request(0), 100.0)
    seen.add(link.version)
    link.pop_finished(0.5)
    seen.add(link.version)
    link.pop_finished(1.0)
    seen.add(link.version)
    assert len(seen) == 4


def test_a_link_finish_time_follows_its_remaining_bytes_and_sharers() -> None:
    """10 B/s from t = 1: 30 B alone ends at t = 4; with a second 30 B transfer from t = 2 (20 B left then, 5 B/s
    each) the first ends at t = 6, the second (20 B by then, 10 left alone) at t = 7; the link was busy from 1 to 7."""
    link = Link(("a", "b"), 10.0, 0.5)
    first, second = request(0), request(1)
    link.add(1.0, first, 30.0)
    assert link.next_finish() == pytest.approx(4.0)
    link.add(2.0, second, 30.0)
    assert link.next_finish() == pytest.approx(6.0)
    assert link.pop_finished(6.0) == [first] and link.next_finish() == pytest.approx(7.0)
    assert link.pop_finished(7.0) == [second]
    assert link.busy_s == pytest.approx(6.0) and link.latency == 0.5


def batch_server() -> BatchServer:
    return BatchServer(0, "d", None, 8, 4096, 100_000, 10_000.0)  # type: ignore[arg-type]


def test_mean_context_is_the_rounded_mean_of_the_running_sequences() -> None:
    """Contexts 101 and 52 (153 / 2 = 76.5 → 76, round half to even), then one step later 102 and 53 (77.5 → 78)."""
    server = batch_server()
    assert server.mean_context == 0, "no running sequence: no context to read"
    server.join(request(0, prompt=100, output=50, generated=1))
    server.join(request(1, prompt=51, output=50, generated=1))
    assert server.mean_context == 76
    server.step += 1
    assert server.mean_context == 78 and server.kv_used == 155


def test_requests_held_count_waiting_running_and_prefilling() -> None:
    server = batch_server()
    server.waiting.extend([request(0), request(1)])
    server.join(request(2, generated=1))
    server.prefilling.extend([request(3), request(4), request(5)])
    assert server.outstanding == 2 + 1 + 3
    prefill = PrefillServer(0, "p", None, 4, 1000, 100_000, 1000.0)  # type: ignore[arg-type]
    prefill.queue.extend([request(0), request(1)])
    prefill.in_batch = 3
    assert prefill.outstanding == 5


def test_a_request_context_is_its_prompt_and_the_tokens_made_so_far() -> None:
    r = request(0, prompt=100, output=10)
    assert r.context == 100 and r.first_token < 0 and r.finish < 0 and not r.dropped
    r.generated = 4
    assert r.context == 104


def test_entities_are_compared_and_hashed_by_identity() -> None:
    """Two requests (or servers) alike in every field are still two: the engine removes a request from a list by
    identity, and misspelt fields fail loudly (slotted records)."""
    a, b = request(0), request(0)
    assert a != b and len({a, b}) == 2
    servers = [batch_server(), batch_server()]
    assert servers[0] != servers[1] and len(set(servers)) == 2
    links = [Link(("a", "b"), 1.0, 0.0), Link(("a", "b"), 1.0, 0.0)]
    assert links[0] != links[1] and len(set(links)) == 2
    prefills = [PrefillServer(0, "p", None, 4, 1000, 100_000, 1000.0) for _ in range(2)]  # type: ignore[arg-type]
    assert prefills[0] != prefills[1] and len(set(prefills)) == 2
    for record in (a, servers[0], links[0], prefills[0]):
        with pytest.raises(AttributeError):
            record.prefiled = 1  # type: ignore[union-attr]


def test_preemption_skips_sequences_that_already_finished() -> None:
    """a (20 tokens to go) joins before b (1 to go): once b has finished, the newest running sequence is a."""
    server = batch_server()
    a, b = request(0, output=21, generated=1), request(1, output=2, generated=1)
    server.join(a)
    server.join(b)
    server.step += 1
    assert server.pop_done() == [b]
    assert server.pop_newest() is a and a.generated == 2 and server.running == 0 and server.kv_used == 0


def test_an_idle_link_has_nothing_to_pop() -> None:
    link = Link(("a", "b"), 100.0, 0.0)
    assert link.pop_finished(1.0) == [] and link.busy_s == 0.0
