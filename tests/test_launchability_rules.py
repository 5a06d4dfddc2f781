"""scheduler.launchability at its boundaries: the single-stage and single-sequence edges of the pipeline rules, a
replica without stages, and the direction of a KV route (what test_launchability's message table leaves open)."""

from __future__ import annotations

import pytest
from test_launchability import Shape  # the model shape the launch rules read

from planner.scheduler import launchability as rules


def test_a_one_stage_decode_replica_is_what_a_connector_needs() -> None:
    # PP = 1 is the one decode depth a connector accepts; PP = 2 is refused; without a connector any depth runs
    assert rules.decode_pp_allowed("decode", 1, True)
    assert not rules.decode_pp_allowed("decode", 2, True)
    assert rules.decode_pp_allowed("decode", 2, False) and rules.decode_pp_allowed("prefill", 2, True)


def test_one_stage_needs_no_batch_room_even_with_no_sequences() -> None:
    # the pipeline rule starts at PP = 2: a single stage holds no micro-batch in flight beyond its own
    assert rules.pipeline_batch_problem(1, 0) is None
    assert rules.pipeline_batch_problem(2, 1) == (
        "max_num_seqs=1 < PP=2: the pipeline could never hold a micro-batch per stage."
    )


def test_a_replica_without_stages_covers_no_layer() -> None:
    problems = rules.layout_problems([], role="prefill", connector="nixl", model=Shape())
    assert [p.at("r") for p in problems] == ["r: stages cover layers [0, 0) but the model has 32."]


@pytest.mark.parametrize(
    ("source", "target", "problem"),
    [
        ("prefill", "decode", None),
        ("decode", "prefill", "is not a prefill → decode pair."),
        ("prefill", "prefill", "is not a prefill → decode pair."),
        ("colocated", "decode", "is not a prefill → decode pair."),
        (None, "decode", "is not a prefill → decode pair."),
    ],
)
def test_kv_routes_run_from_prefill_to_decode_only(source, target, problem) -> None:
    assert rules.route_roles_problem(source, target) == problem
