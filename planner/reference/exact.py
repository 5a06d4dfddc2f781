"""Exhaustive reference planner for small clusters: the optimum the heuristic is measured against.

It enumerates every grouping of the GPUs (GPUs of one node are interchangeable, so a grouping
is a multiset partition of the per-node GPU counts) and every role for every group; each (group,
role) runs its highest-capacity admissible layout (scheduler.layouts.best_assessment: the flow value is
monotone in each replica's capacity, so no other layout can do better). Each candidate is scored by
the same cost model and max-flow as the heuristic. A candidate is skipped when min(Σ prefill capacity,
Σ decode capacity) cannot beat the best so far. Exponential: for ≤ ~12 GPUs only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from planner.inputs.problem import Cluster
from planner.scheduler.scoring import Scorer, State, canonical

Vector = tuple[int, ...]


def vector_partitions(total: Vector, largest: Vector | None = None) -> Iterator[list[Vector]]:
    """Multiset partitions of a count vector, parts in non-increasing lexicographic order."""
    if not any(total):
        yield []
        return
    ranges = [range(c, -1, -1) for c in total]
    for part in itertools.product(*ranges):
        if not any(part) or (largest is not None and part > largest):
            continue
        rest = tuple(t - p for t, p in zip(total, part))
        for tail in vector_partitions(rest, part):
            yield [part, *tail]


@dataclass(frozen=True)
class ExactResult:
    throughput_rps: float
    state: State  # the best grouping with roles
    scored: int  # candidates that survived the bound and were scored


def exact_optimum(cluster: Cluster, *, launchable: bool = True) -> ExactResult:
    """The best throughput over all groupings × roles × layouts (see module docstring)."""
    scorer = Scorer(cluster, launchable=launchable, objective="throughput")
    option = scorer.assessment

    counts = tuple(node.count for node in cluster.nodes)
    ids = [[slot.id for slot in cluster.gpus if slot.node == node.name] for node in cluster.nodes]
    best, best_state, scored = 0.0, canonical([]), 0
    for partition in vector_partitions(counts):
        used = [0] * len(counts)
        groups = []
        for part in partition:
            group = tuple(g for n, c in enumerate(part) for g in ids[n][used[n] : used[n] + c])
            used = [u + c for u, c in zip(used, part)]
            groups.append(tuple(sorted(group)))
        # adding a replica never lowers the max-flow, so only groups that fit no role sit out
        choices = [[r for r in ("prefill", "decode") if option(g, r) is not None] or [None] for g in groups]
        for roles in itertools.product(*choices):
            live = [(g, r) for g, r in zip(groups, roles) if r is not None]
            prefill = sum(option(g, r).capacity_rps for g, r in live if r == "prefill")
            decode = sum(option(g, r).capacity_rps for g, r in live if r == "decode")
            if min(prefill, decode) <= best:
                continue
            scored += 1
            state = canonical(live)
            if (value := scorer.score(state).throughput_rps) > best:
                best, best_state = value, state
    return ExactResult(best, best_state, scored)
