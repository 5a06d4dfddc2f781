"""Layout variants: a group's layout other than its default, as the search's state records it.

A group's default layout (planner.scheduler.layouts.best_assessment) maximises its own capacity. But a
prefill pipeline sends each layer's KV from the node of the stage holding it: with a slow link between
an H200 node and a 3090 node, 2 of 32 layers on the H200 (the rest beside the decode replica) can beat
the capacity-balanced split many times over. So a state's item may carry a *variant*

    (tp, node order, layers per stage)

that fixes the layout outright: the group's nodes in pipeline order, each node's GPUs in index order
chunked into TP groups, and how many layers each stage holds. The refinement's layout moves produce
them (`layout_moves`): shift layers across a stage boundary (1, 2, 4, … at a time), swap two adjacent
nodes of the pipeline (their layers moving with them, or re-balanced), another TP size, and the
"KV-local" split that gives one node's stages every layer their memory holds. Every variant is scored
by the same max-flow as everything else, so a split is kept only when the plan's throughput rises.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from planner.costs.layout import Layout, Stage
from planner.inputs.problem import Cluster
from planner.scheduler.layouts import (
    balanced_split,
    build_layout,
    node_parts,
    stage_groups,
    tp_options,
)
from planner.types import Role

Variant = tuple[int, tuple[str, ...], tuple[int, ...]]  # (tp, node order, layers per stage)
MAX_SHIFT_STEPS = 6  # layer shifts of 1, 2, 4, …, 2^(steps−1) across a boundary


def variant_of(cluster: Cluster, layout: Layout) -> Variant:
    """The variant that rebuilds `layout` (its stages' nodes in order, TP, layers per stage)."""
    order: list[str] = []
    for stage in layout.stages:
        node = cluster.gpu_by_id[stage.gpus[0]].node
        if not order or order[-1] != node:
            order.append(node)
    return layout.tp, tuple(order), tuple(stage.layers for stage in layout.stages)


def variant_of_key(cluster: Cluster, key: Sequence[tuple[Iterable[str], tuple[int, int]]]) -> Variant | None:
    """The variant of a running engine's layout key (planner.scheduler.stability), or None when a stage's
    GPUs are not the node's GPUs chunked in index order (variants cannot express that)."""
    if not key or any(g not in cluster.gpu_by_id for gpus, _ in key for g in gpus):
        return None
    stages = [(sorted(gpus, key=lambda g: cluster.gpu_by_id[g].index), first, end) for gpus, (first, end) in key]
    layout = Layout(tuple(Stage(tuple(gpus), first, end) for gpus, first, end in stages))
    variant = variant_of(cluster, layout)
    group = [g for gpus, _, _ in stages for g in gpus]
    return variant if layout_of_variant(cluster, group, variant) == layout else None


def layout_of_variant(cluster: Cluster, group: Sequence[str], variant: Variant) -> Layout | None:
    """The layout a variant fixes for `group`, or None when it does not fit the group (other nodes,
    a TP size that does not divide a node's share, layer counts for another number of stages)."""
    tp, order, layers = variant
    parts = dict(node_parts(cluster, group))
    if sorted(order) != sorted(parts) or any(len(gpus) % tp for gpus in parts.values()):
        return None
    stages = stage_groups([(node, parts[node]) for node in order], tp)
    if len(stages) != len(layers) or min(layers) < 1 or sum(layers) != cluster.model.layers:
        return None
    return build_layout(stages, layers)


def _shifts(layers: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Layer counts with 1, 2, 4, … layers moved across one stage boundary (each stage keeps ≥ 1)."""
    for i in range(len(layers) - 1):
        for step in range(MAX_SHIFT_STEPS):
            amount = 2**step
            for src, dst in ((i, i + 1), (i + 1, i)):
                if layers[src] - amount >= 1:
                    moved = list(layers)
                    moved[src] -= amount
                    moved[dst] += amount
                    yield tuple(moved)


def _swaps(cluster: Cluster, group: Sequence[str], tp: int, order: tuple[str, ...], layers: tuple[int, ...]):
    """Adjacent nodes of the pipeline swapped: their stages' layer counts move with them."""
    parts = dict(node_parts(cluster, group))
    per_node = [len(parts[node]) // tp for node in order]
    blocks, start = [], 0
    for count in per_node:
        blocks.append(layers[start : start + count])
        start += count
    for i in range(len(order) - 1):
        new_order = list(order)
        new_order[i], new_order[i + 1] = new_order[i + 1], new_order[i]
        new_blocks = list(blocks)
        new_blocks[i], new_blocks[i + 1] = new_blocks[i + 1], new_blocks[i]
        yield tuple(new_order), tuple(n for block in new_blocks for n in block)


def layout_moves(cluster: Cluster, group: Sequence[str], role: Role, layout: Layout, launchable: bool) -> set[Variant]:
    """Variants one layout move away from `layout` (module docstring); the caller scores them."""
    tp, order, layers = variant_of(cluster, layout)
    found: set[Variant] = {(tp, order, moved) for moved in _shifts(layers)}
    parts = node_parts(cluster, group)
    by_name = dict(parts)
    for new_order, moved in _swaps(cluster, group, tp, order, layers):
        found.add((tp, new_order, moved))
        split = balanced_split(cluster, stage_groups([(n, by_name[n]) for n in new_order], tp), role)
        if split is not None:
            found.add((tp, new_order, tuple(split)))
    for other in tp_options(cluster, parts, role, launchable):
        stages = stage_groups([(n, by_name[n]) for n in order], other)
        split = balanced_split(cluster, stages, role)
        if split is not None:
            found.add((other, order, tuple(split)))
        if len(order) > 1:
            for node in order:
                local = balanced_split(cluster, stages, role, favour=node)
                if local is not None:
                    found.add((other, order, tuple(local)))
    found.discard((tp, order, layers))
    return found
