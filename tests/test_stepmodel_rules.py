"""planner.costs.stepmodel, predict, allreduce and layout on a toy model small enough to count by hand.

Why: the step model's counts (bytes and FLOPs per tensor) and its roofline terms decide every figure a
plan shows; here each is written out tensor by tensor for a model of hidden 8, 4 heads (2 KV) of dim 2,
FFN 16 and vocabulary 100, so a wrong TP divisor or a dropped tensor changes a number we computed
ourselves. The prior step overhead is checked against benchmarks/RESULTS.md ("t0 is a prior": 1.0,
1.25, 1.5, 1.75 ms at TP 1, 2, 4, 8).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from planner.costs import stepmodel as sm
from planner.costs.allreduce import allreduce_seconds, coefficients, ring_seconds
from planner.costs.layout import Layout, Stage
from planner.costs.predict import breakdown, calibration_status, case_work, kv_replication, predict, resolve
from planner.errors import InputError
from planner.inputs.calibrations import AllreduceCalibration, AllreduceRow, StepOverhead
from planner.inputs.catalog import ModelProfile
from planner.inputs.measurements import Measurement

TOY = ModelProfile(name="toy", layers=2, hidden=8, heads=4, kv_heads=2, head_dim=2, ffn=16, vocab=100,
                   gated_mlp=True, tie_embeddings=False, max_position_embeddings=4096)  # fmt: skip
# parameters per layer: q, k, v, o = 8·8 + 8·4 + 8·4 + 8·8 = 192; gate, up, down = 3·8·16 = 384 → 576


# ----------------------------------------------------------------------------- counts


def test_gemm_counts_by_hand():
    # TP 2, 2-byte values, 10 rows: 2 FLOPs per parameter per row, split over 2 GPUs
    flops, nbytes = sm.gemm_counts(TOY, 2, 2, 10)
    assert flops == 2 * 576 * 10 / 2
    # weights 576·2 B / 2; activations per row (values): x into QKV and into gate/up, o and down outputs (4·8,
    # whole on each GPU); q out and attention out into o (2·8/2); k, v out (2·4/2); gate, up out, act into down (3·16/2)
    assert nbytes == 576 * 2 / 2 + 10 * 2 * (4 * 8 + 2 * 8 / 2 + 2 * 4 / 2 + 3 * 16 / 2)
    plain = replace(TOY, gated_mlp=False)  # not gated: up out and act into down only (2·16/2)
    assert sm.gemm_counts(plain, 2, 2, 10)[1] == plain.params_per_layer * 2 / 2 + 10 * 2 * (32 + 8 + 4 + 16)


def test_elementwise_bytes_by_hand():
    # per row (values): 2 norms r+w of h (4·8), 2 residual adds 2r+w of h (6·8), RoPE r+w of q and k
    # ((4 + 2)·2·2/2), activation 2r+w of the FFN (3·16/2); × 10 rows × 2 bytes
    assert sm.elementwise_bytes(TOY, 2, 2, 10) == 10 * 2 * (32 + 48 + 12 + 24)
    assert sm.elementwise_bytes(replace(TOY, gated_mlp=False), 2, 2, 10) == 10 * 2 * (32 + 48 + 12 + 16)


def test_prefill_attention_counts_by_hand():
    # 2 of 4 heads a GPU; causal QKᵀ and PV: 2 FLOPs × heads × dim × Σs² (the other half is masked)
    flops, nbytes = sm.prefill_attention_counts(TOY, 2, 2, 10, 100)
    assert flops == 2 * 2 * 2 * 100
    # per token: Q read and O written (2 heads × dim 2 each), K and V read and written to the cache (1 KV head a
    # GPU × dim 2 × 4)
    assert nbytes == 10 * 2 * (2 * 2 * 2 + 4 * 1 * 2)
    assert sm.prefill_attention_counts(TOY, 1, 2, 10, 100) == (2 * 4 * 2 * 100, 10 * 2 * (2 * 4 * 2 + 4 * 2 * 2))


def test_decode_attention_counts_by_hand():
    # 30 tokens of context over a batch of 3; 2 heads a GPU: QKᵀ and PV are 2 FLOPs each per head·dim·token
    flops, nbytes = sm.decode_attention_counts(TOY, 2, 2, 3, 30, 1.0)
    assert flops == 4 * 30 * 2 * 2
    # K and V of 1 KV head (dim 2, 2 bytes) for each context token; q read and out written per sequence
    assert nbytes == 30 * (2 * 1 * 2 * 2) + 3 * (2 * 2 * 2 * 2)
    # KV heads replicated 2× (TP 4 over 2 KV heads): twice the cache bytes
    assert sm.decode_attention_counts(TOY, 4, 2, 3, 30, 2.0)[1] == 30 * (2 * 1 * 2 * 2) + 3 * (2 * 1 * 2 * 2)


def test_lm_head_counts_by_hand():
    # vocabulary 100 × hidden 8 weights split over TP 2; 3 rows in, 3 × 50 logits out a GPU
    assert sm.lm_head_counts(TOY, 2, 2, 3) == (2 * 800 * 3 / 2, 800 * 2 / 2 + 3 * 2 * (8 + 50))


def test_kv_heads_are_replicated_when_tp_exceeds_them():
    assert [kv_replication(TOY, tp) for tp in (1, 2, 4, 8)] == [1.0, 1.0, 2.0, 4.0]
    assert kv_replication(replace(TOY, kv_heads=3), 2) == pytest.approx(4 / 3)  # ceil(3/2)·2 = 4 heads for 3


# ----------------------------------------------------------------------------- roofline terms

F = sm.Factors(peak_flops=100.0, bandwidth=10.0, eta_compute=0.5, tokens_half=2.0, eta_memory=0.5, tau_layer=1.0,
               eta_attention=0.25, eta_kv=0.5, tau_attention=2.0, step_overhead=7.0)  # fmt: skip


def work(**kw) -> sm.Work:
    base = dict(layers=2, tokens=2, gemm_flops=100, gemm_bytes=10, elem_bytes=5, attn_flops=50, attn_bytes=20,
                allreduce_s=3, lm_tokens=1, lm_flops=50, lm_bytes=100, steps=1)  # fmt: skip
    return sm.Work(**(base | kw))


def test_each_term_by_hand():
    # gemm: compute 100·(2+2)/(2·100·0.5) = 4 s beats bytes 10/(10·0.5) = 2 s; × 2 layers
    # elementwise: 2 × (5/5 + τ 1); attention: bytes 20/(10·0.5) = 4 beats FLOPs 50/(100·0.25) = 2, 2 × (4 + τ 2)
    # all-reduce 2 × 3; LM head: bytes 100/5 = 20 beats 50·(1+2)/(1·50) = 3; overhead 7
    expected = {"gemm": 8.0, "elementwise": 4.0, "attention": 12.0, "allreduce": 6.0, "lm_head": 20.0, "overhead": 7.0}
    assert sm.terms(F, work()) == pytest.approx(expected)
    assert sm.seconds(F, work()) == pytest.approx(57.0)
    # the other side of each roofline: gemm bytes 40 → 8 s a layer; attention FLOPs 200 → 8; LM bytes 10 → 3
    other = sm.terms(F, work(gemm_bytes=40, attn_flops=200, lm_bytes=10))
    assert (other["gemm"], other["attention"], other["lm_head"]) == pytest.approx((16.0, 20.0, 3.0))
    # a compute-bound LM head over 4 rows: 50·(4+2)/(4·50) = 1.5 s
    assert sm.terms(F, work(lm_tokens=4, lm_bytes=0))["lm_head"] == pytest.approx(1.5)


def test_work_left_unsaid_is_absent():
    # only the per-layer counts given: no all-reduce, no LM head, no step overhead, every per-layer term in
    bare = sm.Work(layers=2, tokens=2, gemm_flops=100, gemm_bytes=10, elem_bytes=5, attn_flops=50, attn_bytes=20)
    expected = {"gemm": 8.0, "elementwise": 4.0, "attention": 12.0, "allreduce": 0.0, "lm_head": 0.0, "overhead": 0.0}
    assert sm.terms(F, bare) == expected


def test_excluded_terms_weigh_nothing():
    t = sm.terms(F, work(w_elementwise=0.0, w_attention=0.0, w_allreduce=0.0, steps=0.0))
    assert (t["elementwise"], t["attention"], t["allreduce"], t["overhead"]) == (0.0, 0.0, 0.0, 0.0)
    assert sm.seconds(F, work(w_elementwise=0.0, w_attention=0.0, w_allreduce=0.0, steps=0.0)) == pytest.approx(28.0)


# ----------------------------------------------------------------------------- step overhead and priors


def table(*rows) -> list[StepOverhead]:
    return [StepOverhead(tp=tp, seconds=s) for tp, s in rows]


def test_step_overhead_interpolates_in_log2_tp_and_holds_beyond_the_table():
    t = table((8, 5e-3), (1, 1e-3), (4, 2e-3))  # any order
    expected = {1: 1e-3, 2: 1.5e-3, 4: 2e-3, 8: 5e-3, 16: 5e-3}  # TP 2 halfway (log2) between 1 and 4
    assert {tp: sm.step_overhead(t, tp) for tp in expected} == pytest.approx(expected)
    assert sm.step_overhead(table((2, 1e-3), (8, 3e-3)), 1) == 1e-3  # below the table: its first row
    assert sm.step_overhead(table((2, 1e-3), (8, 3e-3)), 4) == pytest.approx(2e-3)


def test_the_prior_is_the_catalogue_efficiencies_and_the_documented_overheads(catalog):
    gpu = replace(catalog.gpus["H100-SXM"], calibration=None)
    p = sm.prior_parameters(gpu)
    assert (p.eta_compute, p.eta_attention, p.eta_memory, p.eta_kv) == (0.55, 0.55, 0.80, 0.80)
    # RESULTS.md: t0(TP) = 1.0, 1.25, 1.5, 1.75 ms at TP 1, 2, 4, 8 (linear in log2 TP)
    assert [sm.step_overhead(p.step_overhead, tp) for tp in (1, 2, 4, 8)] == pytest.approx([1e-3, 1.25e-3, 1.5e-3,
                                                                                           1.75e-3])  # fmt: skip
    f = sm.gpu_factors(gpu, "bfloat16", 4)
    assert (f.peak_flops, f.bandwidth, f.step_overhead) == (989.4e12, 3350e9, pytest.approx(1.5e-3))
    assert (f.tau_layer, f.tau_attention, f.tokens_half) == (35e-6, 30e-6, 16.0)


def test_gpu_factors_use_the_calibration_and_are_memoised(catalog):
    gpu = catalog.gpus["H100-SXM"]
    cal = gpu.calibration.parameters
    f = sm.gpu_factors(gpu, "bfloat16", 2)
    assert (f.eta_compute, f.eta_kv, f.tau_layer) == (cal.eta_compute, cal.eta_kv, cal.tau_layer_s)
    assert f.step_overhead == sm.step_overhead(cal.step_overhead, 2)
    assert sm.gpu_factors(gpu, "bfloat16", 2) is f  # the planner's hot loop asks again and again
    other = replace(gpu, calibration=None)  # another GPU object: its own factors
    assert sm.gpu_factors(other, "bfloat16", 2).eta_compute == 0.55


# ----------------------------------------------------------------------------- predict


def case(**kw) -> Measurement:
    base = dict(gpu="H100-SXM", model="llama-3.1-8b", tp=2, phase="decode", batch=4, context=1000, dtype="bfloat16")
    return Measurement(**(base | kw))


def test_excludes_drop_exactly_their_terms(catalog):
    full = breakdown(case(scope="layers"), catalog)
    for term in ("elementwise", "attention", "allreduce"):
        cut = breakdown(case(scope="layers", excludes=(term,)), catalog)
        assert cut[term] == 0.0 and full[term] > 0
        assert {k: v for k, v in cut.items() if k != term} == {k: v for k, v in full.items() if k != term}
    # the elementwise term itself, by hand: L·(bytes/(B·η_m) + τ_layer) with the calibration's factors
    m = catalog.model("llama-3.1-8b")
    p = catalog.gpus["H100-SXM"].calibration.parameters
    per_row = 10 * m.hidden + 2 * (m.heads + m.kv_heads) * m.head_dim / 2 + 3 * m.ffn / 2
    elem = m.layers * (4 * 2 * per_row / (3350e9 * p.eta_memory) + p.tau_layer_s)
    assert full["elementwise"] == pytest.approx(elem)


def test_engine_scope_adds_the_lm_head_and_one_step_overhead(catalog):
    layers, engine = breakdown(case(scope="layers"), catalog), breakdown(case(), catalog)
    assert layers["lm_head"] == 0.0 and layers["overhead"] == 0.0 and engine["lm_head"] > 0
    t0 = sm.step_overhead(catalog.gpus["H100-SXM"].calibration.parameters.step_overhead, 2)
    assert engine["overhead"] == pytest.approx(t0)
    assert predict(case(), catalog) == pytest.approx(sum(engine.values()))
    # the LM head sees one row per sequence: a prefill of 4 prompts pays what a decode step of 4 sequences pays
    prefill = breakdown(case(phase="prefill", tokens=300, context=None), catalog)
    assert prefill["lm_head"] == pytest.approx(engine["lm_head"]) and prefill["overhead"] == engine["overhead"]


def test_prefill_work_counts_every_prompt(catalog):
    r = resolve(case(phase="prefill", tokens=100, batch=3, context=None), catalog, "case")
    w = case_work(case(phase="prefill", tokens=100, batch=3, context=None), r)
    m = catalog.model("llama-3.1-8b")
    assert (w.tokens, w.lm_tokens, w.steps, w.layers) == (300, 3, 1.0, m.layers)
    assert w.attn_flops == 2 * (m.heads / 2) * m.head_dim * 3 * 100**2  # Σs² over three prompts of 100
    # two all-reduces a layer of 300 rows × hidden × 2 bytes on the GPU's NVLink
    link = catalog.links["nvlink4"]
    assert w.allreduce_s == pytest.approx(2 * allreduce_seconds(link, 2, 300 * m.hidden * 2))
    d = case_work(case(), resolve(case(), catalog, "case"))
    assert (d.tokens, d.lm_tokens, d.steps) == (4, 4, 1.0)
    assert d.allreduce_s == pytest.approx(2 * allreduce_seconds(link, 2, 4 * m.hidden * 2))
    assert d.attn_flops == 4 * 4 * 1000 * (m.heads / 2) * m.head_dim  # batch 4 × context 1000 tokens read


def test_allreduce_cases_use_the_named_implementation(catalog):
    link = catalog.links["nvlink4"]
    c = Measurement(phase="allreduce", tp=4, bytes=2**20, interconnect="nvlink4", engine="nccl")
    assert predict(c, catalog) == allreduce_seconds(link, 4, 2**20, "nccl")
    other = c.model_copy(update={"engine": "sglang"})  # not an implementation of the table: the engine's choice
    assert predict(other, catalog) == allreduce_seconds(link, 4, 2**20)
    assert breakdown(c, catalog) == {"allreduce": predict(c, catalog)}
    # an all-reduce belongs to the link: its GPU column is informative only, even when the catalogue lacks it
    tagged = c.model_copy(update={"gpu": "GH200-not-in-catalogue"})
    assert predict(tagged, catalog) == predict(c, catalog)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"gpu": "Z9"}, "here: field gpu:"),
        ({"model": "no-such-model"}, "here: field model:"),
        ({"interconnect": "carrier-pigeon"}, "here: field interconnect:"),
        ({"gpu": "V100", "dtype": "bfloat16"}, "here: field dtype: V100-32G has no bfloat16 peak in the catalogue."),
    ],
)
def test_unknown_names_say_which_field(catalog, update, message):
    with pytest.raises(InputError) as error:
        predict(case(**update), catalog, "here")
    assert message in error.value.message


def test_a_step_needs_a_model(catalog):
    c = Measurement.model_construct(**(case().model_dump() | {"model": None}))
    with pytest.raises(InputError) as error:
        predict(c, catalog, "row 3")
    assert error.value.message == "row 3: field model: phase decode needs a model."


def test_calibration_status_of_gpus_and_links(catalog):
    assert calibration_status(case(), catalog) == "calibrated"
    assert calibration_status(case(gpu="L40", dtype="float16"), catalog) == "fallback from L40S"
    bare = replace(catalog, gpus={**catalog.gpus, "L40": replace(catalog.gpus["L40"], calibration=None)})
    assert calibration_status(case(gpu="L40", dtype="float16"), bare) == "uncalibrated"
    ar = Measurement(phase="allreduce", tp=2, bytes=1024, interconnect="nvlink4")
    assert calibration_status(ar, catalog) == "calibrated"
    assert calibration_status(ar.model_copy(update={"interconnect": "pcie3"}), catalog) == "fallback from pcie4"
    assert calibration_status(ar.model_copy(update={"interconnect": "ib-ndr"}), catalog) == "uncalibrated"


# ----------------------------------------------------------------------------- all-reduce table


def link_with(rows, scale=1.0):
    from planner.inputs.catalog import LinkProfile

    digest = hashlib.sha256(repr(rows).encode()).hexdigest()  # the look-up memoises by content, as files are
    table = AllreduceCalibration("t", digest, "x", tuple(rows), bandwidth_scale=scale)
    return LinkProfile("x", "intra_node", 100e9, 1e-6, allreduce=table)


ROWS = [
    AllreduceRow(implementation="nccl", tp=2, min_bytes=0, latency_s=10e-6, bandwidth_bytes_per_s=10e9),
    AllreduceRow(implementation="nccl", tp=2, min_bytes=4096, latency_s=20e-6, bandwidth_bytes_per_s=40e9),
]


def test_a_message_takes_the_band_it_reaches():
    link = link_with(ROWS)
    assert allreduce_seconds(link, 2, 4095) == pytest.approx(10e-6 + 4095 / 10e9)
    assert allreduce_seconds(link, 2, 4096) == pytest.approx(20e-6 + 4096 / 40e9)  # the band starts at its min_bytes
    # below the lowest band (a table starting at 4 KiB): the lowest band
    high = link_with(ROWS[1:])
    assert allreduce_seconds(high, 2, 100) == pytest.approx(20e-6 + 100 / 40e9)


def test_a_fallback_table_scales_bandwidth():
    # a donor's table on a link of half the bandwidth: β halves, α stays
    assert allreduce_seconds(link_with(ROWS, 0.5), 2, 1000) == pytest.approx(10e-6 + 1000 / 5e9)
    assert coefficients(link_with(ROWS, 0.5).allreduce, 2)[0][1][0] == (0, 10e-6, pytest.approx(2 / 10e9))


def test_ring_formula_for_links_without_a_table():
    # 2(tp−1) steps of latency; each GPU sends 2(tp−1)/tp of the message
    assert ring_seconds(1e6, 4, 1e9, 1e-6) == pytest.approx(6e-6 + 1.5 * 1e6 / 1e9)
    assert ring_seconds(1e6, 1, 1e9, 1e-6) == 0.0
    from planner.inputs.catalog import LinkProfile

    plain = LinkProfile("p", "intra_node", 1e9, 1e-6)
    assert allreduce_seconds(plain, 4, 1e6) == pytest.approx(6e-6 + 1.5e-3)
    assert allreduce_seconds(plain, 1, 1e6) == 0.0


# ----------------------------------------------------------------------------- layout


def test_a_layout_counts_its_stages_gpus_and_layers():
    layout = Layout((Stage(("a", "b"), 0, 10), Stage(("c", "d"), 10, 32)))
    assert (layout.pp, layout.tp, layout.gpus) == (2, 2, ("a", "b", "c", "d"))
    assert [(s.tp, s.layers) for s in layout.stages] == [(2, 10), (2, 22)]


def test_a_layout_is_a_hashable_immutable_value():
    layout = Layout((Stage(("a", "b"), 0, 4), Stage(("c",), 4, 8)))
    assert layout.tp == 2  # the first stage's TP
    assert {layout: 1}[Layout((Stage(("a", "b"), 0, 4), Stage(("c",), 4, 8)))] == 1  # plans key replicas by layout
    with pytest.raises(FrozenInstanceError):
        layout.stages[0].layer_end = 5  # type: ignore[misc]


# ----------------------------------------------------------------------------- more edges


def test_records_of_the_step_model_are_immutable_or_slotted(catalog):
    with pytest.raises(FrozenInstanceError):
        F.eta_compute = 1.0  # type: ignore[misc]
    w = work()
    with pytest.raises(AttributeError):
        w.gemm_flop = 1.0  # type: ignore[attr-defined]  # a misspelt count fails instead of being ignored
    with pytest.raises(FrozenInstanceError):
        resolve(case(), catalog, "case").gpu = None  # type: ignore[misc]


def test_a_one_row_lm_head_pays_the_small_gemm_penalty():
    # 1 row: η_c(1) = η_c·1/(1 + m½) → 50·(1 + 2)/(1·50) = 3 s (bytes 0)
    assert sm.terms(F, work(lm_tokens=1, lm_bytes=0))["lm_head"] == pytest.approx(3.0)


def test_excluded_attention_and_allreduce_by_hand(catalog):
    m = catalog.model("llama-3.1-8b")
    p = catalog.gpus["H100-SXM"].calibration.parameters
    full = breakdown(case(scope="layers"), catalog)
    # batch 4 × context 1000 at TP 2, 2-byte values: QKᵀ and PV FLOPs, the KV cache read plus q and out
    heads, kv = m.heads / 2, m.kv_heads / 2
    flops = 4 * 4000 * heads * m.head_dim
    nbytes = 4000 * 2 * kv * m.head_dim * 2 + 4 * 2 * 2 * heads * m.head_dim
    attention = m.layers * (max(flops / (989.4e12 * p.eta_attention), nbytes / (3350e9 * p.eta_kv)) + p.tau_attention_s)
    assert full["attention"] == pytest.approx(attention)
    # two all-reduces a layer of batch × hidden × 2 bytes
    ar = 2 * allreduce_seconds(catalog.links["nvlink4"], 2, 4 * m.hidden * 2)
    assert full["allreduce"] == pytest.approx(m.layers * ar)


def test_a_hugging_face_config_stands_for_a_model(catalog):
    path = Path(__file__).parent / "fakes" / "tiny-llama" / "config.json"
    by_path = predict(case(model=str(path), scope="layers"), catalog)
    assert by_path > 0 and math.isfinite(by_path)
    assert by_path != predict(case(scope="layers"), catalog)


def test_predict_takes_nccl_or_vllm_as_named_and_the_fastest_for_other_engines(catalog):
    link = catalog.links["nvlink4"]
    c = Measurement(phase="allreduce", tp=4, bytes=2**20, interconnect="nvlink4")
    nccl, vllm = allreduce_seconds(link, 4, 2**20, "nccl"), allreduce_seconds(link, 4, 2**20, "vllm")
    assert vllm < nccl  # vLLM's custom all-reduce wins at 1 MiB on NVLink
    assert predict(c.model_copy(update={"engine": "nccl"}), catalog) == nccl
    assert predict(c.model_copy(update={"engine": "vllm"}), catalog) == vllm
    assert predict(c, catalog) == vllm
    # an engine that is not an all-reduce implementation takes the fastest, even where a table names it
    slow = AllreduceRow(implementation="sglang", tp=4, latency_s=1e-3, bandwidth_bytes_per_s=1e9)
    table = replace(link.allreduce, table=(*link.allreduce.table, slow), sha256="with-sglang")
    cat = replace(catalog, links={**catalog.links, "nvlink4": replace(link, allreduce=table)})
    assert predict(c.model_copy(update={"engine": "sglang"}), cat) == pytest.approx(vllm)


def test_beyond_a_one_or_three_size_table_the_nearest_size_scales():
    link = link_with(ROWS[:1])  # TP 2 only: TP 4 is 3× α and (3/4)/(1/2) = 1.5× 1/β
    assert allreduce_seconds(link, 4, 1000) == pytest.approx(30e-6 + 1.5 * 1000 / 10e9)
    three = [
        AllreduceRow(implementation="nccl", tp=tp, latency_s=tp * 1e-6, bandwidth_bytes_per_s=1e9) for tp in (2, 4, 8)
    ]
    assert allreduce_seconds(link_with(three), 16, 0.0) == pytest.approx(8e-6 * 15 / 7)  # from TP 8, the largest


def test_below_the_lowest_band_the_lowest_band_applies():
    rows = [
        ROWS[1],
        ROWS[1].model_copy(update={"min_bytes": 2**20, "latency_s": 50e-6, "bandwidth_bytes_per_s": 100e9}),
    ]
    assert allreduce_seconds(link_with(rows), 2, 100) == pytest.approx(20e-6 + 100 / 40e9)


def test_an_implementation_the_table_lacks_takes_the_fastest_it_has():
    link = link_with([*ROWS, AllreduceRow(implementation="vllm", tp=2, latency_s=1e-6, bandwidth_bytes_per_s=5e9)])
    fastest = allreduce_seconds(link, 2, 1000)
    assert fastest == pytest.approx(1e-6 + 1000 / 5e9)  # vLLM's 1 µs beats NCCL's 10 µs at 1 kB
    assert allreduce_seconds(link, 2, 1000, "msccl") == fastest


def test_table_coefficients_are_memoised():
    link = link_with(ROWS)
    assert coefficients(link.allreduce, 2) is coefficients(link.allreduce, 2)
