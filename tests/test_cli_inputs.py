"""`hexplan validate | profiles | schema` on the shipped examples and catalogue."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import CLUSTER_EXAMPLES, EXAMPLES

EXAMPLE_FILES = CLUSTER_EXAMPLES


def test_there_are_examples():
    names = {p.name for p in EXAMPLE_FILES}
    assert {"tiny.yaml", "large-1024.yaml", "paper-h100-homogeneous.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_validate_every_example(run_cli, path):
    result = run_cli("validate", path)
    assert result.exit_code == 0, result.output
    assert f"ok: {path} is valid" in result.stdout
    assert "GPU type" in result.stdout and "$/h" in result.stdout


def test_validate_prints_the_summary(run_cli):
    result = run_cli("validate", EXAMPLES / "tiny.yaml")
    out = result.stdout
    assert "8 GPUs, $18.58/h" in out  # 4 × A100-80G at $2.736 + 4 × L40 at $1.908
    assert "A100-80G" in out and "L40" in out and "320 GB" in out and "192 GB" in out
    assert "node ↔ node bandwidth" in out and "100Gbps" in out  # the network between the two nodes
    assert "model llama-3.1-8b" in out


@pytest.mark.parametrize(("kind", "at_least"), [("gpus", 14), ("links", 10), ("models", 10)])
def test_profiles_lists_every_entry(run_cli, catalog, kind, at_least):
    result = run_cli("profiles", kind)
    assert result.exit_code == 0, result.output
    keys = list(getattr(catalog, kind))
    assert len(keys) >= at_least
    lines = result.stdout.splitlines()
    for key in keys:
        assert any(line.startswith(f"│ {key} ") for line in lines), key


def test_profiles_defaults_to_gpus(run_cli):
    assert "gpus catalogue" in run_cli("profiles").stdout


def test_profiles_rejects_unknown_kind(run_cli):
    result = run_cli("profiles", "cpus")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'cpus' is not one of" in result.stderr


@pytest.mark.parametrize("kind", ["cluster", "plan"])
def test_schema_is_valid_json_schema(run_cli, kind):
    result = run_cli("schema", kind)
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)


def test_every_example_matches_the_cluster_schema(run_cli):
    """Unit strings ("100Gbps") and the `default: 100Gbps` shorthand are part of the published schema."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(run_cli("schema", "cluster").stdout))
    for path in EXAMPLE_FILES:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], path
    assert not validator.is_valid(
        {"model": "x", "workload": {}, "nodes": [{"name": "a", "gpu": "L4", "count": 1, "nic": "100 gigabits"}]}
    )


def test_schema_rejects_unknown_kind(run_cli):
    assert run_cli("schema", "launcher").exit_code == 2


def test_no_arguments_prints_help(run_cli):
    result = run_cli()
    assert "validate" in result.output and "profiles" in result.output and "schema" in result.output
