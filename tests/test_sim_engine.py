"""The simulator's event handlers end to end on small plans: one-token requests, requests a decode replica cannot
hold, colocated prefills stalling decodes, preemption under KV pressure, the queue samples, and the sweeps built on
runs (saturation, goodput)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import cluster, draft_plan, hf_config, node, replica, toy_gpu

from planner.sim.arrivals import Arrivals
from planner.sim.engine import Simulation
from planner.sim.metrics import Slo
from planner.sim.sweeps import default_rate, goodput, saturation, simulate_rate, simulate_replay

SLO = Slo(2.0, 0.1)


def run(plan, c, times, prompts, outputs, **options):
    arrivals = Arrivals(np.asarray(times, float), np.asarray(prompts), np.asarray(outputs))
    sim = Simulation(plan, c, arrivals, slo=SLO, warmup=0.0, duration=max(times) + 1, drain=math.inf, **options)
    return sim, sim.run()


@pytest.fixture(scope="module")
def pd():
    c = cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100)
    return c, draft_plan(c, replica(c, "prefill", ["a/0"]), replica(c, "decode", ["l/0"]))


def test_a_one_token_request_ends_at_its_prefill(pd) -> None:
    c, plan = pd
    _, result = run(plan, c, [0.0, 0.0], [500, 500], [1, 8])
    short, long = result.requests
    assert short.finish == short.first_token > 0 and short.kv_arrived == -1.0
    assert long.first_token == long.kv_arrived > 0, "its first token counts once the decode replica has the KV"
    assert long.finish > long.kv_arrived


def test_every_request_ends_where_it_should_and_the_servers_were_busy(pd) -> None:
    c, plan = pd
    _, result = run(plan, c, list(np.linspace(0, 5, 20)), [800] * 20, [20] * 20)
    assert result.finished == 20 and result.dropped == 0
    assert all(0 < u <= 1 for u in result.replica_utilisation.values())
    assert list(result.link_utilisation) == ["a→l"] and 0 < result.link_utilisation["a→l"] < 1
    last = max(r.finish for r in result.requests)
    assert last <= result.sim_seconds <= last + 1.0, "the clock stops at the last event (a queue sample at most)"
    assert result.output_tokens_per_s > 0 and result.preemptions == 0


def test_queue_samples_are_taken_every_period_while_requests_are_in_the_system(pd) -> None:
    c, plan = pd
    _, result = run(plan, c, [0.0, 0.0, 0.0], [800] * 3, [200] * 3, sample_s=0.5)
    times = [t for t, _ in result.queue]
    assert times == pytest.approx([0.5 * (i + 1) for i in range(len(times))])
    assert times[-1] <= result.sim_seconds + 0.5 and all(n >= 0 for _, n in result.queue)


def small_decode(memory: str = "0.0449GB"):
    """A toy model; by default the decode GPU holds ~1600 tokens of KV: enough for the planned 1024 + 256, not for
    2000 (weights ~3.6 MB, activation workspace ~33.5 MB, 2 KiB of KV per token)."""
    model = hf_config(layers=2, hidden=256, heads=4, kv_heads=4, ffn=512, vocab=1000)
    c = cluster(
        node("p", toy_gpu(memory="10GB"), 1), node("d", toy_gpu(memory=memory), 1),
        model=model, prompt=1024, output=256, network=100,
    )  # fmt: skip
    return c, draft_plan(c, replica(c, "prefill", ["p/0"]), replica(c, "decode", ["d/0"]))


def test_a_request_the_decode_replica_cannot_hold_is_dropped_after_prefill() -> None:
    c, plan = small_decode()
    sim, result = run(plan, c, [0.0, 0.0], [1024, 1024], [256, 976])
    fits, too_long = result.requests
    assert fits.finish > 0 and not fits.dropped
    assert too_long.dropped.startswith("request does not fit decode replica") and too_long.first_token == -1.0
    assert result.dropped == 1 and sim.in_system == 0
    assert all(s.kv_used == 0 for s in sim.fronts), "the dropped request's KV is freed on the prefill replica"


def test_kv_pressure_preempts_the_newest_and_still_finishes_everything() -> None:
    """~3000 tokens of decode KV, two sequences admitted at 1025 tokens each that grow to 1924: the newest is
    preempted (recomputed later) when the next step no longer fits."""
    c, plan = small_decode("0.048GB")
    sim, result = run(plan, c, [0.0, 0.0], [1024, 1024], [900, 900])
    assert sim.decodes[0].max_seqs >= 2, "both are admitted together"
    first, second = result.requests
    assert result.finished == 2 and result.dropped == 0 and result.preemptions >= 1
    assert second.preemptions >= 1 and first.preemptions == 0 and second.finish > first.finish


def test_a_colocated_prefill_stalls_the_running_decode() -> None:
    c = cluster(node("a", "A100-80G", 1))
    plan = draft_plan(c, replica(c, "colocated", ["a/0"]))
    _, alone = run(plan, c, [0.0], [1000], [200])
    _, joined = run(plan, c, [0.0, 0.05], [1000, 1500], [200, 10])
    first_alone, first_joined = alone.requests[0], joined.requests[0]
    second = joined.requests[1]
    assert all(r.decode == -1 for r in joined.requests), "a colocated request has no decode replica"
    assert first_joined.first_token == pytest.approx(first_alone.first_token)
    stall = second.first_token - second.arrival  # at least the second's prefill, run instead of decode steps
    assert first_joined.finish - first_alone.finish >= 0.5 * stall > 0


def test_saturation_serves_about_the_plans_rate_and_no_more(pd) -> None:
    c, plan = pd
    result = saturation(plan, c, duration=60.0, seed=0)
    assert result.offered_rps == pytest.approx(1.5 * plan.summary.throughput_rps, rel=0.25)
    assert 0.7 * plan.summary.throughput_rps <= result.throughput_rps <= 1.05 * plan.summary.throughput_rps


def slo_cluster(ttft: str, tpot: str):
    return cluster(node("a", "A100-80G", 2), node("l", "L40", 2), network=100, ttft=ttft, tpot=tpot)


def with_slo(ttft: str, tpot: str):
    c = slo_cluster(ttft, tpot)
    return c, draft_plan(c, replica(c, "prefill", ["a/0"]), replica(c, "decode", ["l/0"]))


def test_goodput_is_the_highest_rate_meeting_the_slo_for_nine_in_ten() -> None:
    c, plan = with_slo("2s", "100ms")
    rate, best = goodput(plan, c, duration=40.0, seed=0, iterations=5)
    assert best is not None and best.slo_attainment >= 0.9
    assert 0 < rate <= 1.2 * plan.summary.throughput_rps
    above = simulate_rate(plan, c, 1.2 * plan.summary.throughput_rps, duration=40.0, seed=0)
    assert above.slo_attainment < 0.9 or rate > 0.9 * 1.2 * plan.summary.throughput_rps
    strict = slo_cluster("1us", "1us")  # the same plan judged by an SLO nothing meets
    assert goodput(plan, strict, duration=20.0, seed=0, iterations=3) == (0.0, None)


def small_colocated(memory: str = "0.1095GB"):
    """A toy colocated replica with (by default) ~30 000 tokens of KV under a max_model_len of 32 768 (the planned
    requests are 1024 + 20 000 tokens)."""
    model = hf_config(layers=2, hidden=256, heads=4, kv_heads=4, ffn=512, vocab=1000)
    c = cluster(node("c", toy_gpu(memory=memory), 1), model=model, prompt=1024, output=20_000)
    return c, draft_plan(c, replica(c, "colocated", ["c/0"]))


def test_a_request_must_fit_the_kv_memory_with_a_token_to_spare() -> None:
    """Colocated: prompt + output + 1 tokens must fit (the one running sequence grows into the watermark); decode:
    prompt + output ≤ KV − 1 (and max_model_len)."""
    c, plan = small_colocated()
    sim, _ = run(plan, c, [0.0], [10], [2])
    room = math.floor(sim.fronts[0].kv_capacity)
    assert room + 1 <= sim.fronts[0].max_model_len
    half = room // 2  # a short prompt: vLLM's admission watermark (1 % of KV) applies to the prompt only
    _, result = run(plan, c, [0.0, 1000.0], [half, half], [room - half - 1, room - half])
    assert [bool(r.dropped) for r in result.requests] == [False, True]
    assert result.requests[0].finish > 0
    c, plan = small_decode()
    sim, _ = run(plan, c, [0.0], [10], [2])
    room = math.floor(sim.decodes[0].kv_capacity - 1)
    _, result = run(plan, c, [0.0, 100.0], [room - 100, room - 99], [100, 100])
    assert [bool(r.dropped) for r in result.requests] == [False, True]


def test_a_batch_server_runs_one_iteration_at_a_time() -> None:
    """Two equal prompts arriving together on a colocated replica: the second is prefilled in its own iteration
    after the first (it arrived while the first one's prefill was running)."""
    c = cluster(node("a", "A100-80G", 1))
    plan = draft_plan(c, replica(c, "colocated", ["a/0"]))
    _, result = run(plan, c, [0.0, 1e-6], [1000, 1000], [5, 5])
    first, second = result.requests
    assert 2 * first.first_token * (1 - 1e-9) <= second.first_token <= 2.01 * first.first_token


def test_a_preempted_colocated_request_keeps_its_first_token() -> None:
    """~70 000 tokens of KV (three planned requests of 21 024 at once), three requests of 12 000 + 12 000 arriving
    together (prefilled in the iterations after the first's) that grow past it: the newest is preempted and
    recomputed, but its time to first token is that of its first prefill, within three prefill iterations."""
    c, plan = small_colocated("0.2GB")
    sim, result = run(plan, c, [0.0] * 3, [12_000] * 3, [12_000] * 3)
    assert sim.fronts[0].max_seqs >= 3 and sim.fronts[0].kv_capacity < 72_000
    first, _, newest = result.requests
    assert result.preemptions >= 1 and newest.preemptions >= 1
    assert first.first_token < newest.first_token <= 3.02 * first.first_token, "not the recompute's, much later"
    assert result.finished == 3 and newest.finish > first.finish


def test_runs_compare_and_serialise_by_their_figures() -> None:
    c, plan = small_colocated()
    one, two = (run(plan, c, [0.0, 0.5], [100, 100], [5, 5])[1] for _ in range(2))
    assert one == two and one.to_json() == two.to_json()
    assert one.requests is not two.requests


def test_the_default_rate_is_80_percent_of_the_plans_flow(pd) -> None:
    _, plan = pd
    assert default_rate(plan) == pytest.approx(0.8 * plan.summary.throughput_rps)


def test_a_replay_is_measured_from_the_first_to_the_last_arrival(pd) -> None:
    c, plan = pd
    times = np.array([0.0, 1.0, 2.0, 4.0])
    result = simulate_replay(plan, c, Arrivals(times, np.full(4, 500), np.full(4, 10)), seed=0)
    assert result.offered_rps == pytest.approx(4 / 4.0, rel=1e-6)
    assert result.finished == 4 and result.throughput_rps > 0
