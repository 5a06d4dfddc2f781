"""planner.sim.engine's rules at their edges, on a toy model (2 layers, 2 KiB of KV per token) with replica limits
set on the built servers so each boundary is a whole number: what is admitted at arrival and after prefill (exactly
at max_model_len or the KV memory is in, one token more is out), when a prefill replica starts its next batch (when
a batch leaves its pipeline, when KV is freed: by a one-token request ending or a request dropped, or shipped),
and what a run cut short reports (the clock at the last event, the link busy until then, samples up to the end).

Times are the cost model's own (ReplicaTiming answers what a batch costs); the expectations are how those add up."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import cluster, draft_plan, hf_config, node, replica, toy_gpu

from planner.errors import InputError
from planner.sim.arrivals import Arrivals
from planner.sim.engine import Simulation
from planner.sim.routing import NO_TRAFFIC

MODEL = hf_config(layers=2, hidden=256, heads=4, kv_heads=4, ffn=512, vocab=1000)


def simulation(plan, c, times, prompts, outputs, *, drain: float = math.inf, duration: float | None = None, **kw):
    arrivals = Arrivals(np.asarray(times, float), np.asarray(prompts), np.asarray(outputs))
    until = max(times) + 1 if duration is None else duration
    return Simulation(plan, c, arrivals, slo=None, warmup=0.0, duration=until, drain=drain, **kw)


@pytest.fixture(scope="module")
def pd():
    """A two-stage (pipelined) prefill replica and a decode replica, 100 Gbit/s apart: a 1000-token prompt's KV
    (2 MB) crosses in ~0.17 ms, well within one prefill latency (~1.6 ms; period ~1.3 ms)."""
    c = cluster(node("p", toy_gpu(), 2), node("d", toy_gpu(), 1), model=MODEL, prompt=1000, output=100)
    return c, draft_plan(c, replica(c, "prefill", ["p/0"], ["p/1"]), replica(c, "decode", ["d/0"]))


@pytest.fixture(scope="module")
def colocated():
    c = cluster(node("c", toy_gpu(), 1), model=MODEL, prompt=200, output=100)
    return c, draft_plan(c, replica(c, "colocated", ["c/0"]))


def latency(sim: Simulation, prompt: int) -> float:
    """The cost model's latency of a lone prompt on the prefill replica."""
    period, latency = sim.fronts[0].timing.prefill([prompt])
    assert period < latency, "the fixture's prefill is pipelined"
    return latency


def test_a_plan_routing_no_traffic_is_refused() -> None:
    c = cluster(node("a", "A100-80G", 2))
    plan = draft_plan(c, replica(c, "prefill", ["a/0"]))
    with pytest.raises(InputError) as refused:
        simulation(plan, c, [0.0], [100], [5])
    assert str(refused.value).startswith(NO_TRAFFIC)


def test_a_colocated_request_fits_at_max_model_len_and_at_kv_memory_with_one_token_to_spare(colocated) -> None:
    """max_model_len 300: 200 + 100 is in, 200 + 101 out. KV memory of 1000 tokens: 500 + 499 (+1 to grow into)
    is in, 500 + 500 out. Everything admitted finishes; drops are counted out of the system at once."""
    c, plan = colocated
    sim = simulation(plan, c, [0.0, 1.0], [200, 200], [100, 101])
    sim.fronts[0].max_model_len = 300
    first, second = sim.run().requests
    assert first.finish > 0 and first.dropped == ""
    assert second.dropped == "prompt + output > max_model_len 300" and second.finish == -1.0
    sim = simulation(plan, c, [0.0, 1.0], [500, 500], [499, 500])
    sim.fronts[0].kv_capacity, sim.fronts[0].max_model_len = 1000.0, 10_000
    first, second = sim.run().requests
    assert first.finish > 0 and second.dropped == "request larger than the replica's KV memory"
    assert sim.in_system == 0


def test_a_disaggregated_request_must_fit_the_prefill_kv_and_then_the_decode_replica(pd) -> None:
    """Prefill KV memory 1000 tokens: a 1000-token prompt is in, 1001 out. Decode: max_model_len 1200 and 1400
    tokens of KV (≤ 1399 with a token to grow into): 1000 + 200 fits, 1000 + 201 not; 1100 + 299 fits the KV with
    max_model_len raised, 1100 + 300 not."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.1, 0.2, 0.3, 0.4], [1000, 1001, 1000, 1000, 1000], [5, 5, 200, 201, 5])
    sim.fronts[0].kv_capacity = 1000.0
    sim.decodes[0].max_model_len = 1200
    result = sim.run()
    too_big, too_long = "prompt larger than the prefill replica's KV memory", "request does not fit decode replica "
    assert [r.dropped for r in result.requests] == ["", too_big, "", too_long + sim.decodes[0].id, ""]
    assert result.finished == 3 and sim.in_system == 0 and sim.fronts[0].kv_used == 0
    sim = simulation(plan, c, [0.0, 0.1], [1100, 1100], [299, 300])
    sim.decodes[0].kv_capacity = 1400.0
    first, second = sim.run().requests
    assert first.finish > 0 and second.dropped.startswith("request does not fit decode replica")


def test_the_next_prefill_starts_when_a_one_token_request_frees_its_kv(pd) -> None:
    """KV for one 1000-token prompt at a time: the second one-token request waits for the first to end (its KV is
    freed at its prefill's end, L) and ends at 2L. The clock is cut 1 s after the arrivals."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [1000, 1000], [1, 1], drain=1.0)
    sim.fronts[0].kv_capacity = 1500.0
    first, second = sim.run().requests
    one = latency(sim, 1000)
    assert first.finish == pytest.approx(one) and second.finish == pytest.approx(2 * one)


def test_the_next_prefill_starts_when_a_request_dropped_after_prefill_frees_its_kv(pd) -> None:
    """The first request does not fit the decode replica (1000 + 200 > 1100 − 1): dropped at L, its KV freed then;
    the second (one token) is prefilled from L to 2L."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [1000, 1000], [200, 1], drain=1.0)
    sim.fronts[0].kv_capacity = 1500.0
    sim.decodes[0].kv_capacity = 1100.0
    dropped, second = sim.run().requests
    assert dropped.dropped and second.finish == pytest.approx(2 * latency(sim, 1000))


def test_the_next_prefill_starts_when_the_shipped_kv_arrives(pd) -> None:
    """KV for one prompt at a time: the second prompt waits for the first one's KV to reach the decode replica
    (at L + x, x the transfer), then takes the same L + x: its KV arrives at 2(L + x)."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [1000, 1000], [5, 5], drain=1.0)
    sim.fronts[0].kv_capacity = 1500.0
    first, second = sim.run().requests
    assert first.kv_arrived > latency(sim, 1000)
    assert second.kv_arrived == pytest.approx(2 * first.kv_arrived)
    assert second.finish > second.kv_arrived and sim.fronts[0].kv_used == 0


def test_a_prefill_held_back_by_max_num_seqs_starts_when_the_batch_leaves_the_pipeline(pd) -> None:
    """max_num_seqs 1 on a pipelined prefill replica: the second prompt cannot start when the first stage frees
    (one sequence is still in the pipeline) but starts as soon as the first leaves it at L, not only once its KV
    has been shipped: the two KV transfers (each ≪ L) arrive L apart."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [1000, 1000], [5, 5], drain=1.0)
    sim.fronts[0].max_seqs = 1
    first, second = sim.run().requests
    assert second.kv_arrived - first.kv_arrived == pytest.approx(latency(sim, 1000))


def test_a_run_cut_short_stops_at_its_end_with_the_link_busy_until_then(pd) -> None:
    """A 1 Mbit/s link: the 2 MB of a 1000-token prompt take 16 s to cross, so at the end of a 3 s run (warm-up 0,
    no drain) the transfer that started at L is still going: the link was busy (3 − L) / 3 of the run; queue
    samples every second up to and including 3 s; the request is unfinished."""
    c = cluster(node("p", toy_gpu(), 2), node("d", toy_gpu(), 1), model=MODEL, prompt=1000, output=100, network=0.001)
    plan = draft_plan(c, replica(c, "prefill", ["p/0"], ["p/1"]), replica(c, "decode", ["d/0"]))
    sim = simulation(plan, c, [0.0], [1000], [5], drain=0.0, duration=3.0)
    result = sim.run()
    assert result.sim_seconds == 3.0 and result.unfinished == 1
    assert [t for t, _ in result.queue] == [1.0, 2.0, 3.0]
    assert result.link_utilisation == {"p→d": pytest.approx((3.0 - latency(sim, 1000)) / 3.0)}
    assert result.replica_utilisation[sim.fronts[0].id] == pytest.approx(sim.fronts[0].timing.prefill([1000])[0] / 3.0)


@pytest.mark.timeout(30)  # the bug this pins was a hang: an unlimited drain waited for ever on the blocked request
def test_a_request_that_could_never_pass_the_watermark_is_dropped_not_waited_for(colocated, pd) -> None:
    """KV memory of 1000 tokens (990 below vLLM's 1 % watermark): 990 + 5 (+1) fits the memory, so it passes the
    arrival check, but its prompt alone needs 991 below the watermark: it is dropped, and the request behind it is
    served. The same on a decode replica after prefill (990 + 5 ≤ 1000 − 1)."""
    c, plan = colocated
    sim = simulation(plan, c, [0.0, 0.0], [990, 300], [5, 5])
    sim.fronts[0].kv_capacity, sim.fronts[0].max_model_len = 1000.0, 10_000
    blocked, behind = sim.run().requests
    assert blocked.dropped == "request larger than the replica's KV memory below vLLM's watermark"
    assert behind.finish > 0 and sim.in_system == 0 and sim.fronts[0].outstanding == 0
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [990, 300], [5, 5])
    sim.decodes[0].kv_capacity = 1000.0
    blocked, behind = sim.run().requests
    assert blocked.dropped.endswith("below vLLM's watermark") and blocked.first_token > 0
    assert behind.finish > 0 and sim.in_system == 0 and sim.decodes[0].outstanding == 0


def test_a_kv_transfer_over_several_node_pairs_waits_for_the_slowest_latency() -> None:
    """Prefill stages on p (layer 0) and d (layer 1), decode on d: the KV crosses p→d (1000 tokens × 1 KiB in
    81.92 µs at 100 Gbit/s, then 5 ms of latency) and d→d (the PCIe link, µs): it arrives L + 81.92 µs + 5 ms."""
    c = cluster(node("p", toy_gpu(), 1), node("d", toy_gpu(), 2), model=MODEL, prompt=1000, output=100, latency="5ms")
    plan = draft_plan(c, replica(c, "prefill", ["p/0"], ["d/1"]), replica(c, "decode", ["d/0"]))
    sim = simulation(plan, c, [0.0], [1000], [5])
    (request,) = sim.run().requests
    assert request.kv_arrived == pytest.approx(latency(sim, 1000) + 1000 * 1024 / 12.5e9 + 5e-3, rel=1e-9)


def test_one_token_requests_end_at_their_prefill_and_two_token_ones_do_not(colocated, pd) -> None:
    c, plan = colocated
    one, two = simulation(plan, c, [0.0, 1.0], [200, 200], [1, 2]).run().requests
    assert one.finish == one.first_token > 0 and two.finish > two.first_token > 1.0
    c, plan = pd
    one, two = simulation(plan, c, [0.0, 1.0], [200, 200], [1, 2]).run().requests
    assert one.finish == one.first_token > 0 and one.kv_arrived == -1.0
    assert two.finish > two.kv_arrived == two.first_token > 1.0


def test_queue_samples_skip_idle_spans_on_the_sampling_grid(colocated) -> None:
    """Every 0.5 s while requests are in the system or about to come: the first request is done by 0.5 s, the next
    arrives at 10.3 s, so sampling resumes at 10.5 s (the grid point after it), then every 0.5 s while the second
    runs (a third arrives at 11.6 s meanwhile) until the first grid point after the last finish."""
    c, plan = colocated
    sim = simulation(plan, c, [0.0, 10.3, 11.6], [200, 200, 200], [5, 1500, 5], sample_s=0.5)
    sim.fronts[0].max_model_len = 10_000
    result = sim.run()
    last = max(r.finish for r in result.requests)
    assert result.finished == 3 and 11.6 < result.requests[1].finish == last
    assert [t for t, _ in result.queue] == [0.5, *(0.5 * k for k in range(21, math.ceil(last / 0.5) + 1))]
    assert result.sim_seconds == result.queue[-1][0]


def test_a_prompt_being_prefilled_holds_its_kv_and_one_token_more() -> None:
    """KV memory 1000 (990 below the watermark), 256-token steps: a 600-token prompt is prefilled over three steps,
    holding 601 tokens meanwhile. A 388-token prompt arriving during the first step (needs 389: 990 in all) joins
    it in the third step and has its first token no later than the first request finishes; a 389-token one (991)
    waits until the first request is done."""
    c = cluster(node("c", toy_gpu(), 1), model=MODEL, prompt=200, output=100)
    plan = draft_plan(c, replica(c, "colocated", ["c/0"]))
    for second_prompt, joins in ((388, True), (389, False)):
        sim = simulation(plan, c, [0.0, 1e-6], [600, second_prompt], [2, 2])
        server = sim.fronts[0]
        server.kv_capacity, server.max_tokens, server.max_model_len = 1000.0, 256, 10_000
        first, second = sim.run().requests
        assert (second.first_token <= first.finish) is joins


def test_a_preempted_sequence_is_counted_once_and_recomputed(colocated) -> None:
    """KV memory 1000: two 300 + 400 requests grow together until they no longer fit; the newer one is evicted
    once, with g tokens made (the older then runs alone to 700 tokens, which leaves no room for it). When the older
    ends, the newer recomputes its whole context C = 300 + g in one chunk, then decodes its 400 − g tokens left
    alone at contexts C, C + 1, …: its finish is that much after the older one's."""
    c, plan = colocated
    sim = simulation(plan, c, [0.0, 0.0], [300, 300], [400, 400])
    sim.fronts[0].kv_capacity, sim.fronts[0].max_model_len = 1000.0, 10_000
    result = sim.run()
    older, newer = result.requests
    assert (result.preemptions, older.preemptions, newer.preemptions) == (1, 0, 1)
    assert result.finished == 2
    context = newer.prefilled  # the recomputed context: the prompt and the g tokens made before the eviction
    made = context - newer.prompt
    assert 0 < made < 400
    timing = sim.fronts[0].timing
    after = timing.mixed_step(0, 0, context, context**2, 1)
    after += sum(timing.decode_step(1, context + k) for k in range(newer.output - made))
    assert newer.finish - older.finish == pytest.approx(after, rel=1e-9)


def test_a_chunked_prompt_costs_each_chunks_tokens_and_attention() -> None:
    """An 8000-token prompt in 4096-token steps on an A100 (compute-bound: attention matters): chunks of 4096 and
    3904 tokens whose attention terms are 4096² and 8000² − 4096² (the new tokens attend to the earlier ones too)."""
    c = cluster(node("a", "A100-80G", 1))
    plan = draft_plan(c, replica(c, "colocated", ["a/0"]))
    sim = simulation(plan, c, [0.0], [8000], [1])
    server = sim.fronts[0]
    server.max_tokens, server.max_model_len = 4096, 10_000
    (request,) = sim.run().requests
    step = server.timing.mixed_step
    assert request.finish == pytest.approx(step(0, 0, 4096, 4096**2, 1) + step(0, 0, 3904, 8000**2 - 4096**2, 1))


def test_a_replica_busy_past_the_end_of_the_run_is_fully_utilised_not_more(pd) -> None:
    """A 1 ms run (samples every 0.5 ms) in which a prefill batch of ~1.3 ms period starts at 0: utilisation 1."""
    c, plan = pd
    sim = simulation(plan, c, [0.0], [1000], [5], drain=0.0, duration=0.001, sample_s=0.0005)
    result = sim.run()
    assert result.sim_seconds == 0.001
    assert result.replica_utilisation == {sim.fronts[0].id: 1.0, sim.decodes[0].id: 0.0}


def test_the_router_phase_defaults_to_seed_zero() -> None:
    """Two colocated replicas: the router's phase (seed) picks which one takes the first request; without a seed
    it is seed 0's choice."""
    c = cluster(node("c", toy_gpu(), 2), model=MODEL, prompt=200, output=100)
    plan = draft_plan(c, replica(c, "colocated", ["c/0"]), replica(c, "colocated", ["c/1"]))

    def fronts(**seed: int) -> list[int]:
        return [r.front for r in simulation(plan, c, [0.0, 1.0, 2.0], [200] * 3, [5] * 3, **seed).run().requests]

    assert fronts() == fronts(seed=0) != fronts(seed=1)


def test_queue_samples_count_the_requests_waiting_at_every_replica(colocated, pd) -> None:
    """One request waiting in each place at t = 1 s: a prefill replica's queue (KV for one prompt, the first one's
    taking 16 s to ship over 1 Mbit/s), a colocated replica's waiting queue and a decode replica's (max_num_seqs 1,
    the first request decoding for ~1.5 s)."""
    c = cluster(node("p", toy_gpu(), 2), node("d", toy_gpu(), 1), model=MODEL, prompt=1000, output=100, network=0.001)
    plan = draft_plan(c, replica(c, "prefill", ["p/0"], ["p/1"]), replica(c, "decode", ["d/0"]))
    sim = simulation(plan, c, [0.0, 0.0], [1000, 1000], [5, 5], drain=0.0, duration=2.0)
    sim.fronts[0].kv_capacity = 1500.0
    assert sim.run().queue == [(1.0, 1), (2.0, 1)]
    c, plan = colocated
    sim = simulation(plan, c, [0.0, 0.0], [200, 200], [1500, 1500], drain=0.0, duration=1.0)
    sim.fronts[0].max_seqs, sim.fronts[0].max_model_len = 1, 10_000
    assert sim.run().queue == [(1.0, 1)]
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0], [200, 200], [1500, 1500], drain=0.0, duration=1.0)
    sim.decodes[0].max_seqs, sim.decodes[0].max_model_len = 1, 10_000
    assert sim.run().queue == [(1.0, 1)]


def test_the_routers_view_counts_requests_in_flight_per_front_replica(pd) -> None:
    """What RoutingPolicy reads: a mapping of every front-end replica to its requests in flight (0 for a name it
    does not know); empty again after a drained run."""
    c, plan = pd
    sim = simulation(plan, c, [0.0, 0.0, 0.0], [1000] * 3, [5] * 3, drain=0.0, duration=0.001)
    front = sim.fronts[0].id
    sim.run()
    assert dict(sim.in_flight) == {front: 3} and len(sim.in_flight) == 1
    assert sim.in_flight[front] == sim.in_flight.get(front) == 3 and sim.in_flight.get("elsewhere") == 0
    sim = simulation(plan, c, [0.0, 0.0, 0.0], [1000] * 3, [5] * 3)
    sim.run()
    assert dict(sim.in_flight) == {front: 0}


def test_each_request_decodes_on_the_replica_the_router_chose_for_it() -> None:
    """One prefill replica feeding two decode replicas: the router splits the requests between them, and each
    request's decode index names a replica that was busy."""
    c = cluster(node("p", toy_gpu(), 1), node("d", toy_gpu(), 2), model=MODEL, prompt=200, output=100)
    plan = draft_plan(c, replica(c, "prefill", ["p/0"]), replica(c, "decode", ["d/0"]), replica(c, "decode", ["d/1"]))
    sim = simulation(plan, c, [0.1 * i for i in range(6)], [200] * 6, [20] * 6)
    result = sim.run()
    assert result.finished == 6 and sorted({r.decode for r in result.requests}) == [0, 1]
    assert all(result.replica_utilisation[d.id] > 0 for d in sim.decodes)
