"""The catalogue (profiles/*.yaml): required entries, sane figures with sources, user overrides, HF import."""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml

from planner.errors import InputError
from planner.inputs.catalog import DEFAULT_PROFILES_DIR, CatalogFile, load_catalog, model_from_hf_config
from planner.yamlio import load_yaml, validate

REQUIRED_GPUS = [
    "H100-SXM",
    "H100-PCIe",
    "H200-SXM",
    "A100-80G",
    "A100-40G",
    "L40S",
    "L40",
    "RTX-A6000",
    "RTX-4090",
    "RTX-3090",
    "A10",
    "L4",
    "T4",
    "V100-32G",
    "MI300X",
]
REQUIRED_LINKS = [
    "nvlink3",
    "nvlink4",
    "pcie4",
    "pcie5",
    "ib-hdr",
    "ib-ndr",
    "roce-100g",
    "eth-10g",
    "eth-25g",
    "eth-100g",
]
REQUIRED_MODELS = [
    "opt-30b",
    "opt-66b",
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "qwen2.5-72b",
]
DATE = re.compile(r"20\d\d")


@pytest.fixture(scope="module")
def raw() -> CatalogFile:
    """The shipped files as written (sources, params_b), merged."""
    files = [validate(CatalogFile, load_yaml(p), p) for p in sorted(DEFAULT_PROFILES_DIR.glob("*.yaml"))]
    return CatalogFile(
        gpus={k: v for f in files for k, v in f.gpus.items()},
        links={k: v for f in files for k, v in f.links.items()},
        models={k: v for f in files for k, v in f.models.items()},
    )


def test_required_entries_present(catalog):
    assert len(catalog.gpus) >= 14 and set(REQUIRED_GPUS) <= set(catalog.gpus)
    assert set(REQUIRED_LINKS) <= set(catalog.links)
    assert len(catalog.models) >= 10 and set(REQUIRED_MODELS) <= set(catalog.models)


@pytest.mark.parametrize("key", REQUIRED_GPUS)
def test_gpu_figures_are_sane_and_sourced(catalog, raw, key):
    gpu = catalog.gpus[key]
    assert 8e9 <= gpu.memory <= 300e9
    assert 200e9 <= gpu.memory_bandwidth <= 10e12
    assert 20e12 <= gpu.flops("float16") <= 2e15
    assert 0 < gpu.compute_efficiency <= 1 and 0 < gpu.memory_efficiency <= 1
    assert 0 < gpu.price_per_hour < 20
    assert gpu.intra_node_link in catalog.links
    entry = raw.gpus[key]
    assert DATE.search(entry.source) and DATE.search(entry.price_source), "every figure needs a source and date"


def test_reference_figures(catalog):
    """Spot checks against datasheets (dense, no sparsity)."""
    h100 = catalog.gpu("H100-SXM")
    assert h100.flops("bfloat16") == pytest.approx(989.4e12)
    assert h100.memory == 80e9 and h100.memory_bandwidth == pytest.approx(3.35e12)
    assert catalog.gpu("A100-80G").flops("float16") == pytest.approx(312e12)
    assert "bfloat16" not in catalog.gpu("T4").peak_flops  # Turing has no BF16


def test_gpu_without_dtype_says_so(catalog):
    with pytest.raises(InputError, match=r"GPU V100-32G has no bfloat16 peak"):
        catalog.gpu("V100-32G").flops("bfloat16")


@pytest.mark.parametrize("key", REQUIRED_LINKS)
def test_links_have_bandwidth_latency_and_source(catalog, raw, key):
    link = catalog.links[key]
    assert link.bandwidth > 0 and 0 < link.latency < 1e-3
    assert link.kind == ("network" if key.startswith(("ib", "roce", "eth")) else "intra_node")
    assert DATE.search(raw.links[key].source)


def test_link_ordering(catalog):
    bw = {k: v.bandwidth for k, v in catalog.links.items()}
    assert bw["nvlink4"] > bw["nvlink3"] > bw["pcie5"] > bw["pcie4"]
    assert bw["ib-ndr"] > bw["ib-hdr"] > bw["eth-100g"] > bw["eth-25g"] > bw["eth-10g"]
    assert bw["eth-100g"] == pytest.approx(100e9 / 8)


@pytest.mark.parametrize("key", sorted(yaml.safe_load((DEFAULT_PROFILES_DIR / "models.yaml").read_text())["models"]))
def test_model_shapes(catalog, raw, key):
    model = catalog.models[key]
    assert model.heads % model.kv_heads == 0
    assert model.hidden == model.heads * model.head_dim
    assert model.max_position_embeddings >= 2048
    params_b = raw.models[key].params_b
    assert params_b is not None
    assert model.total_params / 1e9 == pytest.approx(params_b, rel=0.01)
    assert DATE.search(raw.models[key].source)


def test_lookups_are_case_insensitive_with_aliases(catalog):
    assert catalog.gpu("h100").key == "H100-SXM"
    assert catalog.gpu("A100-SXM4-80GB").key == "A100-80G"
    assert catalog.model("Llama-2-70B").name == "llama-2-70b"
    with pytest.raises(LookupError, match=r"did you mean 'RTX-4090'"):
        catalog.gpu("RTX-4900")
    with pytest.raises(LookupError, match=r"unknown link 'nvlnk4'; did you mean 'nvlink4'"):
        catalog.link("nvlnk4")


# ----------------------------------------------------------------------------- user catalogues


USER_CATALOGUE = """
gpus:
  B200:
    name: NVIDIA B200
    memory: 192GB
    memory_bandwidth: 8TB/s
    fp16: 2250TFLOPS
    intra_node_link: nvlink5
    price: $6/h
  L4:
    name: my cheaper L4
    memory: 24GB
    memory_bandwidth: 300GB/s
    fp16: 121TFLOPS
    price: $0.1/h
links:
  nvlink5: {kind: intra_node, bandwidth: 900GB/s, latency: 2us}
models:
  tiny-1b: {layers: 4, hidden: 512, heads: 8, kv_heads: 8, head_dim: 64, ffn: 2048, vocab: 1000,
            gated_mlp: true, max_position_embeddings: 4096}
"""


def test_user_catalogue_adds_and_overrides(tmp_path):
    (tmp_path / "mine.yaml").write_text(USER_CATALOGUE)
    catalog = load_catalog([tmp_path])
    assert catalog.gpu("B200").memory == 192e9
    assert catalog.gpu("L4").price_per_hour == 0.1  # later entries override by key
    assert catalog.link("nvlink5").bandwidth == 900e9
    assert catalog.model("tiny-1b").layers == 4
    assert "H100-SXM" in catalog.gpus  # the shipped catalogue is still there


def test_cli_lists_user_catalogue(run_cli, tmp_path):
    (tmp_path / "mine.yaml").write_text(USER_CATALOGUE)
    result = run_cli("profiles", "gpus", "--profiles", tmp_path)
    assert result.exit_code == 0, result.output
    assert "B200" in result.stdout and "my cheaper L4" in result.stdout


def test_bad_user_catalogue_names_file_and_field(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpus:\n  X1: {name: x, memory: 80, memory_bandwidth: 1TB/s, fp16: 1PFLOPS}\n")
    result = run_cli("profiles", "gpus", "--profiles", tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{bad}: gpus.X1.memory: 80 has no unit" in result.stderr


def test_user_catalogue_with_unknown_link(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "gpus:\n  X1: {name: x, memory: 8GB, memory_bandwidth: 1TB/s, fp16: 1PFLOPS, intra_node_link: warp}\n"
    )
    with pytest.raises(InputError, match=r"gpus.X1.intra_node_link: unknown link 'warp'"):
        load_catalog([tmp_path])


def test_missing_profiles_dir(run_cli, tmp_path):
    result = run_cli("profiles", "models", "--profiles", tmp_path / "nope")
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope'}: profiles directory not found" in result.stderr


# ----------------------------------------------------------------------------- Hugging Face config.json


def _hf_config(catalog, key: str) -> dict:
    m = catalog.models[key]
    opt = key.startswith("opt")
    return {
        "model_type": "opt" if opt else "llama",
        "num_hidden_layers": m.layers,
        "hidden_size": m.hidden,
        "num_attention_heads": m.heads,
        "num_key_value_heads": m.kv_heads,
        ("ffn_dim" if opt else "intermediate_size"): m.ffn,
        "vocab_size": m.vocab,
        "max_position_embeddings": m.max_position_embeddings,
        "tie_word_embeddings": m.tie_embeddings,
    }


@pytest.mark.parametrize("key", ["llama-2-70b", "opt-30b", "qwen2.5-7b"])
def test_hf_config_matches_catalogue(catalog, tmp_path, key):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_hf_config(catalog, key)))
    model, reference = model_from_hf_config(path), catalog.models[key]
    assert model.params_per_layer == reference.params_per_layer
    assert model.total_params == reference.total_params
    assert model.kv_elements_per_token_layer() == reference.kv_elements_per_token_layer()


def test_hf_config_rejects_moe(catalog, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_hf_config(catalog, "llama-3.1-8b") | {"num_local_experts": 8}))
    with pytest.raises(InputError, match="mixture-of-experts configs are not supported"):
        model_from_hf_config(path)


def test_total_params_formula(catalog):
    """Llama-2-7B by hand: 32 × (4·4096² + 3·4096·11008) + 2·32000·4096 (norms not counted)."""
    expected = 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 2 * 32000 * 4096
    assert catalog.model("llama-2-7b").total_params == expected
    assert math.isclose(expected / 1e9, 6.74, rel_tol=0.001)
