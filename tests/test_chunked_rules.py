"""planner.costs.chunked rule by rule on a toy model: the mixed step's limits (no chunk: the decode step; no
decodes: the prefill alone; both: fixed costs paid once), PP hops, the workload's step shape, an operating point
against a Poisson expectation summed with scipy, the saturated and SLO-bound engine (token budget by brute force,
the batch caps tried).

Why: the colocated engine's figures reach every mixed plan, and test_roles.py only sees them through whole plans.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from builders import cluster, gbps, hf_config, layout, node, toy_gpu
from scipy.stats import poisson

from planner.costs.chunked import (
    _longest_step,
    _operating_point,
    _Shape,
    _token_budget,
    _within_slo,
    colocated_perf,
    mixed_step_time,
)
from planner.costs.memory import kv_capacity_tokens
from planner.costs.replica import decode_step_time, prefill_batch_time
from planner.inputs.problem import Network, Slo
from planner.inputs.workload import Lengths, Workload

LAYERS, HIDDEN = 4, 256


def toy(*, prompt: int = 3000, output: int = 101, memory: str = "10GB", network: float | None = 8, tpot=None):
    model = hf_config(layers=LAYERS, hidden=HIDDEN, heads=4, kv_heads=2, ffn=512, vocab=1000)
    gpu = toy_gpu(memory=memory)
    c = cluster(node("a", gpu, 2), node("b", gpu, 2), model=model, prompt=prompt, output=output, network=network,
                latency="1ms")  # fmt: skip
    return dataclasses.replace(c, slo=Slo(None, tpot)) if tpot else c


ONE = layout(LAYERS, ["a/0"])
PIPE = layout(LAYERS, ["a/0"], ["b/0"], split=[1])  # stages of 1 and 3 layers: not interchangeable
EVEN = layout(LAYERS, ["a/0"], ["b/0"])  # 2 and 2 layers: the sum of stages and hop is the longer wait


# ----------------------------------------------------------------------------- the mixed step


@pytest.mark.parametrize("lay", [ONE, PIPE, EVEN], ids=["pp1", "pp2", "pp2-even"])
@pytest.mark.parametrize("decodes", [1.0, 7.0, 64.0])
def test_a_step_without_a_chunk_is_the_decode_step(lay, decodes):
    c = toy()
    assert mixed_step_time(c, lay, decodes, 500.0, 0.0, 0.0) == pytest.approx(
        decode_step_time(c, lay, decodes, 500.0), rel=1e-12
    )


@pytest.mark.parametrize("chunk", [1.0, 16.0, 700.0, 3000.0])
def test_a_step_without_decodes_is_the_prefill_of_its_chunk(chunk):
    c = toy()
    # one prompt of `chunk` tokens: Σ s² = chunk²; its prefill alone, through replica's own prefill batch
    alone = mixed_step_time(c, ONE, 0.0, 500.0, chunk, chunk * chunk, 1.0)
    assert alone == pytest.approx(prefill_batch_time(c, ONE, [int(chunk)])[1], rel=1e-12)
    assert mixed_step_time(c, ONE, 0.0, 500.0, chunk, chunk * chunk) == alone  # one prompt unless told otherwise


def test_the_fused_step_pays_the_fixed_costs_once():
    c = toy()

    def step(b: float, chunk: float) -> float:
        return mixed_step_time(c, ONE, b, 800.0, chunk, chunk * 1000.0, chunk / 1000.0)

    for b, chunk in ((8.0, 500.0), (100.0, 2000.0), (3.0, 1.0)):
        prefill, decode, empty = step(0.0, chunk), step(b, 0.0), step(0.0, 0.0)
        assert step(b, chunk) == pytest.approx(prefill + decode - empty, rel=1e-12)
        assert max(prefill, decode) <= step(b, chunk) <= prefill + decode
        assert empty > 0.0  # a step with no tokens still reads the weights


def test_a_pipelines_mixed_step_waits_for_its_slowest_hop_once_per_micro_batch():
    # a 0.001 Gbit/s link between the stages: the hop of (decodes + chunk)/pp tokens dominates, and a sequence
    # waits pp of them
    c = toy(network=0.001)
    tokens = (4.0 + 64.0) / 2
    hop = tokens * HIDDEN * 2 / gbps(0.001) + 1e-3
    assert mixed_step_time(c, PIPE, 4.0, 500.0, 64.0, 64.0 * 64.0, 1.0) == pytest.approx(2 * hop, rel=1e-12)


def test_an_engine_whose_pipeline_crosses_no_link_has_no_figures():
    c = dataclasses.replace(toy(), network=Network())  # no link at all between a and b
    assert mixed_step_time(c, PIPE, 4.0, 500.0, 64.0, 64.0 * 64.0, 1.0) == math.inf
    assert colocated_perf(c, PIPE, None) is None
    assert colocated_perf(c, ONE, None) is not None


def test_the_step_shape_of_a_workload():
    c = toy()
    uniform = dataclasses.replace(c, workload=Workload(Lengths("uniform", 1000.0, low=500.0, high=1500.0),
                                                       Lengths("fixed", 41.0)))  # fmt: skip
    shape = _Shape.of(uniform)
    # E[p²] = (500² + 500·1500 + 1500²)/3; per prompt token E[p²]/E[p]; 40 decode tokens; context p̄ + 40/2
    second = (500**2 + 500 * 1500 + 1500**2) / 3
    assert shape == _Shape(1000.0, pytest.approx(second / 1000.0), 40.0, 1020.0)
    assert shape.step(uniform, ONE, 5.0, 250.0) == mixed_step_time(
        uniform, ONE, 5.0, 1020.0, 250.0, 250.0 * second / 1000.0, 0.25
    )


# ----------------------------------------------------------------------------- operating points


def expected_point(c, lay, per_step: float, budget: int):
    """The module docstring's operating point summed directly: N ~ Poisson(x) mean prompts, the chunk cut at the
    room the decodes leave, the cut tokens carried at a full step's extra cost per room's worth."""
    shape = _Shape.of(c)
    decodes = per_step * shape.decode
    room = budget - decodes
    counts = np.arange(0, 200)
    pmf = poisson.pmf(counts, per_step)
    chunks = np.minimum(counts * shape.prompt, room)
    steps = np.array([shape.step(c, lay, decodes, float(x)) for x in chunks])
    full, empty = shape.step(c, lay, decodes, room), shape.step(c, lay, decodes, 0.0)
    carried = float(pmf @ np.maximum(counts * shape.prompt - room, 0.0)) / room
    step = float(pmf @ steps) + carried * (full - empty)
    return per_step / step, step, room, full


@pytest.mark.parametrize("per_step", [0.3, 1.5, 2.6])
def test_an_operating_point_is_the_poisson_mean_step(per_step):
    # 3000-token prompts, 100 decode tokens: the room (8192 − 100x) lies between 6000 and 9000 tokens, so every
    # chunk is 0, 3000, 6000 or the room: points the model reads exactly, no interpolation in between
    c = toy()
    found = _operating_point(c, ONE, _Shape.of(c), per_step, 8192)
    assert found == pytest.approx(expected_point(c, ONE, per_step, 8192), rel=1e-9)


def test_an_operating_point_with_small_prompts_interpolates_between_chunk_sizes():
    c = toy(prompt=100, output=11)
    found = _operating_point(c, ONE, _Shape.of(c), 0.05, 8192)  # N ≥ 3 (interpolated) has mass 2e-5
    assert found == pytest.approx(expected_point(c, ONE, 0.05, 8192), rel=1e-6)


def test_no_operating_point_beyond_what_the_token_budget_carries():
    c = toy()  # p = 3000, D = 100
    shape = _Shape.of(c)
    assert _operating_point(c, ONE, shape, 2.0, 8192) is not None
    assert _operating_point(c, ONE, shape, 2.7, 8192) is None  # 8100 prompt tokens > room 7922
    assert _operating_point(c, ONE, shape, 2.6, 8192) is not None  # 7800 ≤ room 7932
    # 1-token prompts, 1024 decode tokens: the decodes' share decides (x · 1024 exact in binary)
    tiny = toy(prompt=1, output=1025)
    shape = _Shape.of(tiny)
    assert _operating_point(tiny, ONE, shape, 8184 / 1024, 8192) is None  # room 8 < 16
    assert _operating_point(tiny, ONE, shape, 8176 / 1024, 8192) is not None  # room exactly 16
    assert _operating_point(tiny, ONE, shape, 8166 / 1024, 8192) is not None  # room 26


# ----------------------------------------------------------------------------- the engine


def test_the_saturated_engine_runs_at_the_most_requests_per_step():
    c = toy()  # plenty of KV: 512 slots; the budget binds: x = 8192 / (3000 + 100)
    perf = colocated_perf(c, ONE, None)
    kv = kv_capacity_tokens(c, ONE, 8192)
    assert perf.kv_tokens == kv and perf.batch == 512 and perf.max_num_batched_tokens == 8192
    most = 8192 / 3100
    rate, step, _, _ = expected_point(c, ONE, most, 8192)
    assert perf.capacity_rps == pytest.approx(rate, rel=1e-9) and perf.tpot_s == pytest.approx(step, rel=1e-9)
    assert perf.goodput_rps is None
    assert perf.ttft_s == pytest.approx(mixed_step_time(c, ONE, 0.0, 3050.0, 3000.0, 3000.0**2, 1.0), rel=1e-12)


def test_the_batch_is_what_kv_memory_holds_with_headroom():
    c = toy(memory="0.1GB")
    kv = kv_capacity_tokens(c, ONE, 8192)
    batch = math.floor(0.95 * kv / 3100)  # a sequence holds its prompt and its decode tokens
    assert 1 < batch < 512
    perf = colocated_perf(c, ONE, None)
    assert perf.batch == batch
    # the batch cap binds: x = B / D requests a step
    rate, _, _, _ = expected_point(c, ONE, batch / 100, 8192)
    assert perf.capacity_rps == pytest.approx(rate, rel=1e-9)


def test_an_engine_needs_room_for_one_long_request():
    # one request holds 3000 + 101 tokens of KV; the memory where the capacity crosses it, to 1 MB
    sizes = [f"{m}MB" for m in range(45, 60)]
    fits = [m for m in sizes if kv_capacity_tokens(toy(memory=m), ONE, 8192) >= 3101]
    assert fits and fits[0] != sizes[0]
    assert colocated_perf(toy(memory=fits[0]), ONE, None) is not None
    assert colocated_perf(toy(memory=sizes[sizes.index(fits[0]) - 1]), ONE, None) is None


def test_a_prompt_longer_than_the_default_budget_gets_a_budget_of_its_own():
    c = toy(prompt=10000, output=11)
    perf = colocated_perf(c, ONE, None)
    assert perf.max_num_batched_tokens == 10000
    assert perf.ttft_s == pytest.approx(mixed_step_time(c, ONE, 0.0, 10005.0, 10000.0, 1e8, 1.0), rel=1e-12)


def test_the_token_budget_is_the_largest_whose_longest_step_meets_the_tpot():
    c = toy()
    shape = _Shape.of(c)
    assert _token_budget(c, ONE, shape, 64, None) == 8192
    for tpot in (0.006, 0.008, 0.01):
        budget = _token_budget(c, ONE, shape, 64, tpot)
        assert _longest_step(c, ONE, shape, 64, budget) <= tpot < _longest_step(c, ONE, shape, 64, budget + 1)
    loose = _longest_step(c, ONE, shape, 64, 8192)
    assert _token_budget(c, ONE, shape, 64, loose) == 8192  # exactly met at the top
    tight = _longest_step(c, ONE, shape, 64, 64 + 16)
    assert _token_budget(c, ONE, shape, 64, tight) == 80  # exactly met at the bottom: 16 tokens for prompts
    assert _token_budget(c, ONE, shape, 64, tight * 0.999) is None


def test_the_longest_step_is_at_one_end_of_the_budgets_split():
    c = toy()
    shape = _Shape.of(c)
    longest = _longest_step(c, ONE, shape, 64, 2000)
    splits = [shape.step(c, ONE, float(b), 2000.0 - b) for b in (0, 16, 32, 64)]
    assert longest == max(splits[0], splits[-1]) and longest >= max(splits)


@pytest.mark.parametrize(("tpot", "winner"), [(0.01, 128), (0.02, 256), (0.05, 512)])
def test_under_a_tpot_slo_the_best_of_the_batch_caps_is_kept(tpot, winner):
    # caps B, B/2, B/4 (B = 512 here): a tighter TPOT leaves the big batches no token budget, or a smaller one
    c = toy(tpot=tpot)
    perf = colocated_perf(c, ONE, c.slo)
    shape = _Shape.of(c)
    kv = kv_capacity_tokens(c, ONE, 8192)
    options = [_within_slo(c, ONE, shape, c.slo, cap, kv) for cap in (512, 256, 128)]
    best = max((o for o in options if o is not None), key=lambda o: o.goodput_rps)
    assert perf == best and perf.batch == winner
    assert perf.tpot_s <= tpot and 0 < perf.goodput_rps <= perf.capacity_rps
    assert colocated_perf(toy(tpot=0.001), ONE, Slo(None, 0.001)) is None  # not one token budget meets it


def uniform_prompts(ttft: float | None, tpot: float | None):
    """Prompts uniform on [500, 1500] (their 95 % quantile 1450 tokens), 100 decode tokens, both SLOs."""
    workload = Workload(Lengths("uniform", 1000.0, low=500.0, high=1500.0), Lengths("fixed", 101.0))
    return dataclasses.replace(toy(), workload=workload, slo=Slo(ttft, tpot))


def test_under_an_slo_the_capacity_is_the_saturated_point_of_the_chosen_engine():
    c = uniform_prompts(0.05, 0.005)
    perf = colocated_perf(c, ONE, c.slo)
    b, m = perf.batch, perf.max_num_batched_tokens
    assert m < 8192 and b in (128, 256, 512)  # the TPOT SLO cut the token budget
    most = min(b / 100, m / 1100)  # the batch cap or the token budget: x(p̄ + D̄) ≤ M
    assert perf.capacity_rps == pytest.approx(expected_point(c, ONE, most, m)[0], rel=1e-9)
    assert perf.tpot_s == _longest_step(c, ONE, _Shape.of(c), b, m) <= 0.005


@pytest.mark.parametrize("tpot", [0.005, 0.0046])
def test_under_an_slo_a_long_prompt_alone_takes_whole_full_steps(tpot):
    # unloaded: the lightest operating point (x = most / 1000); the 95 % prompt (1450 tokens; TTFT gets half of
    # the 10 % miss budget) takes ⌈1450 / room⌉ = 2 full steps of the room the decodes leave (a room of about
    # 1270 or 728 tokens: a mean prompt would take 1 or 2, a 1550-token one 2 or 3)
    c = uniform_prompts(0.05, tpot)
    perf = colocated_perf(c, ONE, c.slo)
    b, m = perf.batch, perf.max_num_batched_tokens
    _, _, room, full = expected_point(c, ONE, min(b / 100, m / 1100) / 1000, m)
    assert math.ceil(1450 / room) == 2
    assert perf.ttft_s == pytest.approx(2 * full, rel=1e-9)


def test_goodput_grows_with_the_ttft_slo_until_it_no_longer_binds():
    clusters = [uniform_prompts(ttft, 0.005) for ttft in (0.01, 0.02, 0.05, 1.0, 1e6)]
    rates = [colocated_perf(c, ONE, c.slo).goodput_rps for c in clusters]
    assert rates[:4] == sorted(rates[:4]) and rates[0] < rates[1] < rates[2] < rates[3]
    assert rates[3] == rates[4]  # a TTFT of 1 s is already loose: the slots and the queue's utilisation bind
    capacity = colocated_perf(uniform_prompts(1e6, 0.005), ONE, Slo(1e6, 0.005)).capacity_rps
    assert rates[4] < capacity
    assert colocated_perf(uniform_prompts(1e-4, 0.005), ONE, Slo(1e-4, 0.005)) is None  # below one chunk's step


def test_the_token_budget_lands_on_an_exactly_met_step():
    c = toy()
    shape = _Shape.of(c)
    assert _token_budget(c, ONE, shape, 64, _longest_step(c, ONE, shape, 64, 5000)) == 5000


def test_records_are_frozen():
    c = toy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        _Shape.of(c).prompt = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        colocated_perf(c, ONE, None).batch = 1  # type: ignore[misc]


def test_when_rounding_puts_the_saturated_load_past_the_room_the_engine_runs_a_chunk_lighter():
    # 71-token prompts, 4 decode tokens: x = 8192 / 75 requests a step fill the budget exactly, but in floats
    # 71x exceeds 8192 − 4x by 1e-12, so the saturated point is taken at x · (8192 − 16) / 8192
    c = toy(prompt=71, output=5)
    most = 8192 / 75
    assert most * 71 > 8192 - most * 4
    perf = colocated_perf(c, ONE, None)
    lighter = expected_point(c, ONE, most * (8192 - 16) / 8192, 8192)
    assert perf.capacity_rps == pytest.approx(lighter[0], rel=1e-9) and perf.tpot_s == pytest.approx(lighter[1])


def test_a_ttft_slo_alone_counts_slot_waits_against_its_own_miss_budget():
    # no TPOT SLO: TTFT gets the whole 10 % budget, which also bounds the requests that wait for a slot
    c = uniform_prompts(0.05, None)
    perf = colocated_perf(c, ONE, c.slo)
    assert perf is not None and perf.max_num_batched_tokens == 8192  # no TPOT: vLLM's default budget
    assert 0.0 < perf.goodput_rps < perf.capacity_rps
    assert perf.goodput_rps > colocated_perf(uniform_prompts(0.01, None), ONE, Slo(0.01, None)).goodput_rps
