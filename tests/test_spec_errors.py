"""Bad cluster files through the real CLI: exit status 2, no traceback, file + field path + what was expected.

Each case of issue 2 item 4 (malformed YAML, empty file, binary junk, alias bomb, unknown GPU,
zero/negative counts, unparseable units, duplicate names, unreachable node, model too large),
plus typos, missing files and bad traces.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from itertools import pairwise

import pytest
import yaml

from planner.errors import InputError
from planner.inputs.cluster import load_cluster
from planner.yamlio import load_yaml


def cluster(**changes: object) -> dict:
    """A small valid cluster (llama-3.1-8b on 2×A100-80G + 2×L40) with top-level keys replaced."""
    base: dict = {
        "model": "llama-3.1-8b",
        "workload": {"prompt_tokens": 1024, "output_tokens": 256},
        "nodes": [
            {"name": "a", "gpu": "A100-80G", "count": 2, "nic": "100Gbps"},
            {"name": "b", "gpu": "L40", "count": 2, "nic": "100Gbps"},
        ],
        "network": {"default": "100Gbps"},
    }
    base.update(changes)
    return base


def node(**changes: object) -> dict:
    return {"name": "a", "gpu": "A100-80G", "count": 2, "nic": "100Gbps"} | changes


def expect_input_error(run_cli, path, *fragments: str):
    """Run `hexplan validate path` and check the failure contract; return stderr."""
    result = run_cli("validate", path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in {result.stderr!r}"
    return result.stderr


def test_valid_cluster_passes(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster()))
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output
    assert f"ok: {path} is valid" in result.stdout
    assert "4 GPUs" in result.stdout


# ----------------------------------------------------------------------------- the file itself


def test_malformed_yaml(run_cli, write_yaml):
    path = write_yaml("model: llama-3.1-8b\nnodes: [\n  {name: a\n")
    expect_input_error(run_cli, path, "malformed YAML at line", "column")


def test_tab_indentation_is_malformed(run_cli, write_yaml):
    path = write_yaml("model: x\nnodes:\n\t- name: a\n")
    expect_input_error(run_cli, path, "malformed YAML at line 3")


def test_duplicate_key(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster()) + "nodes: []\n")
    expect_input_error(run_cli, path, "malformed YAML at line", "duplicate key 'nodes'")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"])
def test_empty_file(run_cli, write_yaml, text):
    path = write_yaml(text)
    expect_input_error(run_cli, path, "the cluster file is empty")


def test_binary_junk(run_cli, tmp_path):
    path = tmp_path / "junk.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    expect_input_error(run_cli, path, "is binary data, not a cluster file")


def test_non_utf8_text(run_cli, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("model: caf\u00e9\n".encode("latin-1"))
    expect_input_error(run_cli, path, "is not UTF-8 text (byte 10)")


def test_not_a_mapping(run_cli, write_yaml):
    path = write_yaml("- just\n- a list\n")
    expect_input_error(run_cli, path, "(top level): Input should be a valid dictionary")


BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in pairwise("abcdefghi")]
)


def test_alias_bomb_fails_fast_and_small(run_cli, write_yaml):
    path = write_yaml(BILLION_LAUGHS)  # 9**9 ≈ 387 million strings once expanded
    stderr = expect_input_error(run_cli, path, "alias bomb")
    assert "more than 2,000,000 values" in stderr
    # the guard itself (without CLI start-up and catalogue loading): milliseconds and kilobytes
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(InputError, match="alias bomb"):
        load_yaml(path)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 2.0, elapsed
    assert peak < 10 * 2**20, peak


def test_self_referencing_alias(run_cli, write_yaml):
    path = write_yaml("a: &a [*a]\n")
    expect_input_error(run_cli, path, "alias bomb")


def test_ordinary_aliases_are_fine(run_cli, write_yaml):
    text = yaml.safe_dump(cluster()).replace("nic: 100Gbps", "nic: *nic").replace("nic: *nic", "nic: &nic 100Gbps", 1)
    assert "&nic" in text and "*nic" in text
    result = run_cli("validate", write_yaml(text))
    assert result.exit_code == 0, result.output


def test_missing_file(run_cli, tmp_path):
    path = tmp_path / "nope.yaml"
    expect_input_error(run_cli, path, "no such file (expected a cluster file)", "To fix: check the path")


def test_directory_instead_of_file(run_cli, tmp_path):
    expect_input_error(run_cli, tmp_path, "is a directory")


# ----------------------------------------------------------------------------- fields


def test_unknown_gpu_suggests_close_names(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(gpu="H100-SMX"), node(name="b")])))
    stderr = expect_input_error(run_cli, path, "nodes[0].gpu: unknown GPU type 'H100-SMX'", "hexplan profiles gpus")
    assert "did you mean 'H100-SXM'" in stderr


def test_gpu_alias_is_accepted(write_yaml, catalog):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(gpu="a100"), node(name="b", gpu="h100")])))
    loaded = load_cluster(path, catalog)
    assert [n.gpu.key for n in loaded.nodes] == ["A100-80G", "H100-SXM"]


@pytest.mark.parametrize("count", [0, -3])
def test_zero_or_negative_count(run_cli, write_yaml, count):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(), node(name="b", count=count)])))
    expect_input_error(run_cli, path, f"nodes[1].count: Input should be greater than 0 (got {count})")


def test_count_not_an_integer(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(count="two"), node(name="b")])))
    expect_input_error(run_cli, path, "nodes[0].count: Input should be a valid integer")


def test_zero_token_workload(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(workload={"prompt_tokens": 0, "output_tokens": 256})))
    expect_input_error(run_cli, path, "workload: token counts must be positive, got 0")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"nodes": [node(nic="100Gb"), node(name="b")]}, "nodes[0].nic: cannot read '100Gb' as a bandwidth"),
        ({"nodes": [node(nic=100), node(name="b")]}, "nodes[0].nic: 100 has no unit"),
        ({"nodes": [node(price="2.1"), node(name="b")]}, "nodes[0].price: cannot read '2.1' as a price"),
        ({"network": {"default": "fast"}}, "network.default.bandwidth: cannot read 'fast' as a bandwidth"),
        ({"network": {"default": {"bandwidth": "100Gbps", "latency": "10"}}}, "network.default.latency: cannot read"),
        (
            {"workload": {"prompt_tokens": 1024, "output_tokens": 256, "slo": {"ttft": "2 seconds"}}},
            "workload.slo.ttft: cannot read '2 seconds' as a duration",
        ),
        (
            {"workload": {"prompt_tokens": 1024, "output_tokens": 256, "slo": {"tpot": "-5ms"}}},
            "workload.slo.tpot: '-5ms': a duration must be positive",
        ),
    ],
)
def test_unparseable_units(run_cli, write_yaml, changes, fragment):
    path = write_yaml(yaml.safe_dump(cluster(**changes)))
    expect_input_error(run_cli, path, fragment)


def test_duplicate_node_names(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(), node(gpu="L40")])))
    expect_input_error(run_cli, path, "nodes: duplicate node names: a; every node needs its own name")


def test_node_without_network_path_no_default(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(network={})))
    expect_input_error(run_cli, path, "network: node(s) b have no network path", "add network.default")


def test_node_without_network_path_links_missing_for_one(run_cli, write_yaml):
    nodes = [node(), node(name="b"), node(name="c", gpu="L40")]
    links = [{"between": ["a", "b"], "bandwidth": "100Gbps"}]
    path = write_yaml(yaml.safe_dump(cluster(nodes=nodes, network={"links": links})))
    expect_input_error(run_cli, path, "network: node(s) c have no network path to the rest of the cluster")


def test_single_node_needs_no_network(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node()], network={})))
    assert run_cli("validate", path).exit_code == 0


def test_link_to_unknown_node(run_cli, write_yaml):
    links = [{"between": ["a", "zz"], "bandwidth": "100Gbps"}]
    path = write_yaml(yaml.safe_dump(cluster(network={"default": "100Gbps", "links": links})))
    expect_input_error(run_cli, path, "network.links[0].between names unknown node(s) zz")


def test_model_fits_on_no_gpu_combination(run_cli, write_yaml):
    nodes = [{"name": "l4", "gpu": "L4", "count": 2, "nic": "25Gbps"}]
    path = write_yaml(yaml.safe_dump(cluster(model="llama-3.1-405b", nodes=nodes)))
    stderr = expect_input_error(run_cli, path, "model llama-3.1-405b needs", "all 2 GPUs together offer")
    assert "To fix: add GPUs, pick a smaller model" in stderr


def test_unknown_model_suggests(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(model="llama-3.1-8")))
    expect_input_error(run_cli, path, "model: unknown model 'llama-3.1-8'; did you mean 'llama-3.1-8b'")


def test_unknown_interconnect(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(interconnect="nvlink9"), node(name="b")])))
    expect_input_error(run_cli, path, "nodes[0].interconnect: unknown link 'nvlink9'")


def test_unknown_top_level_key(run_cli, write_yaml):
    data = cluster()
    data["workloda"] = data.pop("workload")
    path = write_yaml(yaml.safe_dump(data))
    expect_input_error(
        run_cli, path, "workloda: Extra inputs are not permitted (did you mean 'workload'?)", "workload: Field required"
    )


def test_unknown_nested_key(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(gpus="A100-80G"), node(name="b")])))
    expect_input_error(run_cli, path, "nodes[0].gpus: Extra inputs are not permitted (did you mean 'gpu'?)")


def test_bad_dtype_and_objective(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(dtype="int3", objective="speed")))
    stderr = expect_input_error(run_cli, path, "dtype: Input should be 'float16', 'bfloat16' or 'fp8'")
    assert "objective: Input should be 'throughput', 'cost', 'goodput' or 'goodput_per_usd'" in stderr


def test_dtype_without_gpu_support(run_cli, write_yaml):
    nodes = [{"name": "t4", "gpu": "T4", "count": 4, "nic": "25Gbps"}]
    path = write_yaml(yaml.safe_dump(cluster(dtype="bfloat16", nodes=nodes)))
    expect_input_error(run_cli, path, "dtype: T4 (node t4) has no bfloat16 support")


def test_uniform_distribution_needs_bounds(run_cli, write_yaml):
    workload = {"prompt_tokens": {"distribution": "uniform", "low": 900, "high": 100}, "output_tokens": 10}
    path = write_yaml(yaml.safe_dump(cluster(workload=workload)))
    expect_input_error(run_cli, path, "workload.prompt_tokens", "a uniform distribution needs low ≤ high")


# ----------------------------------------------------------------------------- traces


TRACE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


@pytest.mark.parametrize(
    ("csv", "fragment"),
    [
        ("time,prompt,output\n2023-11-16 18:15:46.68,10,5\n", "line 1: expected the header TIMESTAMP,"),
        (TRACE_HEADER + "2023-11-16 18:15:46.68,ten,5\n", "line 2: expected 'timestamp,int,int'"),
        (TRACE_HEADER + "2023-11-16 18:15:46.68,10,5\nyesterday,10,5\n", "line 3: expected 'timestamp,int,int'"),
        (TRACE_HEADER + "2023-11-16 18:15:46.68,10\n", "line 2: expected 'timestamp,int,int'"),
        (TRACE_HEADER + "2023-11-16 18:15:46.68,0,5\n", "line 2: token counts must be positive"),
        (TRACE_HEADER, "the trace has no requests"),
        ("", "line 1: expected the header"),
    ],
)
def test_bad_trace_csv(run_cli, write_yaml, csv, fragment):
    trace = write_yaml(csv, name="trace.csv")
    path = write_yaml(yaml.safe_dump(cluster(workload={"trace": "trace.csv"})))
    stderr = expect_input_error(run_cli, path, "workload.trace", str(trace), fragment)
    assert stderr.count("error:") == 1


def test_missing_trace_file(run_cli, write_yaml):
    path = write_yaml(yaml.safe_dump(cluster(workload={"trace": "nowhere.csv"})))
    expect_input_error(run_cli, path, "workload.trace", "nowhere.csv: no such file (expected a trace CSV)")


def test_trace_class_with_no_requests(run_cli, write_yaml):
    write_yaml(TRACE_HEADER + "2023-11-16 18:15:46.68,10,5\n", name="trace.csv")
    path = write_yaml(yaml.safe_dump(cluster(workload={"trace": "trace.csv", "trace_class": "HPHD"})))
    expect_input_error(run_cli, path, "workload.trace", "no request of class HPHD")


def test_trace_and_means_conflict(run_cli, write_yaml):
    workload = {"trace": "t.csv", "prompt_tokens": 10, "output_tokens": 10}
    path = write_yaml(yaml.safe_dump(cluster(workload=workload)))
    expect_input_error(run_cli, path, "workload: give either a trace or prompt_tokens/output_tokens, not both")


# ----------------------------------------------------------------------------- HF config and inline GPUs


def test_hf_config_model(run_cli, write_yaml):
    config = {
        "model_type": "llama",
        "num_hidden_layers": 4,
        "hidden_size": 512,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "intermediate_size": 1024,
        "vocab_size": 1000,
        "max_position_embeddings": 4096,
    }
    write_yaml(json.dumps(config), name="config.json")
    path = write_yaml(yaml.safe_dump(cluster(model="config.json")))
    assert run_cli("validate", path).exit_code == 0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{not json", "not valid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        ('{"num_hidden_layers": 0}', "field num_hidden_layers: expected a positive integer, got 0"),
    ],
)
def test_bad_hf_config(run_cli, write_yaml, text, fragment):
    config = write_yaml(text, name="config.json")
    path = write_yaml(yaml.safe_dump(cluster(model="config.json")))
    result = run_cli("validate", path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(config) in result.stderr and fragment in result.stderr


def test_inline_gpu(run_cli, write_yaml):
    inline = {"name": "Big-1", "memory": "1TB", "memory_bandwidth": "10TB/s", "fp16": "2PFLOPS", "price": "$1/h"}
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(gpu=inline)], network={})))
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output
    assert "Big-1" in result.stdout


def test_inline_gpu_bad_field(run_cli, write_yaml):
    inline = {"name": "Big-1", "memory": "1TB", "memory_bandwidth": "10TB", "fp16": "2PFLOPS"}
    path = write_yaml(yaml.safe_dump(cluster(nodes=[node(gpu=inline)], network={})))
    expect_input_error(run_cli, path, "nodes[0].gpu", "memory_bandwidth: cannot read '10TB' as a bandwidth")
