"""Phase 2 of the scheduler: give each group a role, prefill or decode (or colocated, when allowed).

Each group is a super-node with a prefill capacity and a decode capacity (its best layout for
each role). Groups are ordered by prefill affinity (prefill capacity ÷ decode capacity: compute-
rich groups first, memory-bandwidth-rich last); the prefill set is a prefix of that order. The
split point is chosen by the max-flow value, which balances prefill against decode capacity and
counts the KV bandwidth between the two sets. The flow value is not exactly unimodal in the
split, so a coarse grid is scanned and then the best grid point's neighbourhood, O(√K) flows.
When colocated replicas are allowed, every group colocated is one more candidate (the only one when
they are the only role); refinement then flips single groups between all three roles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from planner.scheduler.scoring import Group, Scorer, State, canonical
from planner.types import Role


def _affinity(scorer: Scorer, group: Group) -> float:
    prefill = scorer.assessment(group, "prefill")
    decode = scorer.assessment(group, "decode")
    if prefill is None and decode is None:
        return -math.inf
    if decode is None:
        return math.inf
    if prefill is None:
        return 0.0
    return prefill.capacity_rps / decode.capacity_rps


def assign_roles(scorer: Scorer, groups: Sequence[Group], *, floor: float = 0.0) -> State:
    """The best prefix split of the affinity order (see module docstring).

    Splits whose capacity bound cannot beat `floor` are not solved (their flow is not needed)."""
    colocated = canonical([(g, "colocated") for g in groups])
    if scorer.roles == ("colocated",):
        return colocated
    ordered = sorted(groups, key=lambda g: (-_affinity(scorer, g), g))

    def state_at(split: int) -> State:
        roles: list[Role] = ["prefill"] * split + ["decode"] * (len(ordered) - split)
        return canonical(list(zip(ordered, roles, strict=True)))

    def value(split: int) -> tuple[float, int]:
        state = state_at(split)
        if scorer.bound(state, floor) <= floor:
            return floor, -split
        return scorer.score(state).value, -split

    n = len(ordered)
    step = max(1, math.isqrt(n))
    coarse = max(range(0, n + 1, step), key=value)
    best = state_at(max(range(max(0, coarse - step), min(n, coarse + step) + 1), key=value))
    allowed = "colocated" in scorer.roles and scorer.bound(colocated) > floor
    return colocated if allowed and scorer.score(colocated).value > scorer.score(best).value else best
