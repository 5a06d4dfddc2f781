"""Defaults in the cluster schema go through the same parsers as values a user writes (issue 9 item 1).

The README's own shorthand (`network: {default: 100Gbps}`, links without `latency`) once passed
`validate` and crashed `solve`, because the default latency "10us" was never parsed. These tests
pin the mechanism (every default of every model is validated) and the promise that anything
`validate` accepts, `solve` can at least start on (hypothesis over generated cluster files).
"""

from __future__ import annotations

import math
from typing import Annotated

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from planner.inputs import catalog as profiles
from planner.inputs import cluster as spec
from planner.inputs.cluster import ClusterSpec, load_cluster

SHORTHAND = """
model: llama-3.1-8b
workload: {prompt_tokens: 512, output_tokens: 64}
nodes:
  - {name: a, gpu: A100-80G, count: 2, nic: 100Gbps, zone: east}
  - {name: b, gpu: L40, count: 2, nic: 100Gbps, zone: west}
  - {name: c, gpu: L40, count: 2, nic: 100Gbps, zone: west}
network:
  default: 100Gbps
  cross_zone: 25Gbps
  links: [{between: [a, c], bandwidth: 50Gbps}]
"""


def test_readme_shorthand_gets_parsed_default_latencies(write_yaml, catalog):
    cluster = load_cluster(write_yaml(SHORTHAND), catalog)
    assert cluster.node_latency("b", "c") == pytest.approx(10e-6)  # default link
    assert cluster.node_latency("a", "b") == pytest.approx(10e-6)  # cross_zone shorthand
    assert cluster.node_latency("a", "c") == pytest.approx(10e-6)  # an override without latency
    assert cluster.node_bandwidth("a", "b") == pytest.approx(25e9 / 8)


def test_readme_shorthand_solves(run_cli, write_yaml, tmp_path):
    result = run_cli("solve", write_yaml(SHORTHAND), "-q", "--time-limit", "5", "-o", tmp_path / "plan.yaml")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def _models(module: object) -> list[type[BaseModel]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__
    ]


@pytest.mark.parametrize("model", [*_models(spec), *_models(profiles)], ids=lambda m: m.__name__)
def test_every_default_is_validated(model):
    """The mechanism: every default goes through its field's parser (a unit string would stay a string otherwise)."""
    assert model.model_config.get("validate_default") is True, f"{model.__name__} does not validate its defaults"
    for field in model.model_fields.values():
        if not field.is_required():  # and each default is a value its own field accepts
            annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            TypeAdapter(annotation).validate_python(field.get_default())


def test_default_link_latency_is_a_number():
    link = spec.LinkSpec.model_validate({"bandwidth": "100Gbps"})
    assert isinstance(link.latency, float) and math.isclose(link.latency, 10e-6)


# ---- validate ⇒ solve starts: generated cluster files -------------------------------------------------

GPUS = ("A100-80G", "L40", "H100-SXM", "RTX-A6000", "L4")
BANDWIDTH = st.sampled_from(("10Gbps", "100Gbps", "25GB/s", "400Gbps"))
LINK = st.one_of(BANDWIDTH, st.fixed_dictionaries({"bandwidth": BANDWIDTH}, optional={"latency": st.just("5us")}))


@st.composite
def cluster_files(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 4))
    nodes = [
        {
            "name": f"n{i}",
            "gpu": draw(st.sampled_from(GPUS)),
            "count": draw(st.sampled_from((1, 2, 4))),
            "nic": draw(BANDWIDTH),
            **({"zone": draw(st.sampled_from(("x", "y")))} if draw(st.booleans()) else {}),
        }
        for i in range(n)
    ]
    network: dict = {}
    if draw(st.booleans()):
        network["default"] = draw(LINK)
    if draw(st.booleans()):
        network["cross_zone"] = draw(LINK)
    if n > 1 and draw(st.booleans()):
        pairs = st.lists(st.sampled_from([(a, b) for a in range(n) for b in range(a + 1, n)]), max_size=3, unique=True)
        network["links"] = [{"between": [f"n{a}", f"n{b}"], "bandwidth": draw(BANDWIDTH)} for a, b in draw(pairs)]
    workload = {"prompt_tokens": draw(st.sampled_from((128, 1024))), "output_tokens": draw(st.sampled_from((16, 256)))}
    return {"model": draw(st.sampled_from(("llama-3.1-8b", "qwen2.5-7b"))), "workload": workload, "nodes": nodes,
            "network": network}  # fmt: skip


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cluster_files())
def test_whatever_validate_accepts_solve_can_start_on(run_cli, tmp_path, data):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(data))
    validated = run_cli("validate", path)
    assert validated.exit_code in (0, 2) and "Traceback" not in validated.output, validated.output
    if validated.exit_code != 0:
        return
    solved = run_cli("solve", path, "-q", "--time-limit", "1")
    assert solved.exit_code in (0, 2), solved.output
    assert "Traceback" not in solved.output
    if solved.exit_code == 2:  # infeasible is a fine answer; it must say so on stderr, naming the file
        assert solved.stderr.startswith("error: ") and str(path) in solved.stderr, solved.stderr


def test_cluster_schema_still_documents_the_default_latency():
    schema = ClusterSpec.model_json_schema(by_alias=True)
    assert schema["$defs"]["LinkSpec"]["properties"]["latency"]["default"] == "10us"
