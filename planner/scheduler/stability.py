"""Which GPUs of a running plan a new plan moves: the rule re-planning bounds and `hexplan diff` counts.

A GPU *moves* when its engine must restart: it served in the running plan, is still in the cluster,
and now serves in a replica with another GPU set, another role or another parallel layout (TP, PP,
which GPUs form each stage, the layer split: vLLM takes them all at start-up), or not at all. GPUs new
to the plan don't count. Written once, so a plan solved under `--max-moved-gpus N` passes the diff
gate `--max-moved-gpus N`.

An engine is given as (GPU group, role) or (GPU group, role, layout key); a missing or None layout
means "not known here" and compares equal to any layout (the GPU set and role still decide).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from planner.costs.layout import Layout
from planner.types import Role

StageKey = tuple[frozenset[str], tuple[int, int]]  # a stage's GPUs and its [first, end) layers
LayoutKey = tuple[StageKey, ...]
Engine = tuple[Iterable[str], Role] | tuple[Iterable[str], Role, LayoutKey | None]
Placement = tuple[frozenset[str], str, LayoutKey | None]  # where a GPU serves: its engine's GPUs, role, layout
Anchor = Mapping[str, Placement]  # GPU → where it serves in the running plan


def layout_key(stages: Iterable[tuple[Iterable[str], int, int]]) -> LayoutKey:
    """What an engine's start-up fixes about its layout: each stage's GPU set and layer range, in order."""
    return tuple((frozenset(gpus), (first, end)) for gpus, first, end in stages)


def key_of(layout: Layout) -> LayoutKey:
    return layout_key((s.gpus, s.layer_start, s.layer_end) for s in layout.stages)


def _placement(engine: Sequence) -> Placement:
    group, role, *rest = engine
    return frozenset(group), role, rest[0] if rest else None


def _same(was: Placement, now: Placement | None) -> bool:
    if now is None or was[:2] != now[:2]:
        return False
    return was[2] is None or now[2] is None or was[2] == now[2]


def anchor_of(running: Iterable[Engine], present: Collection[str] | None = None) -> Anchor:
    """Where each GPU of the running plan's engines serves; GPUs that left the cluster (not in
    `present`, when given) are gone, not moved, so they are left out."""
    anchor: dict[str, Placement] = {}
    for engine in running:
        placement = _placement(engine)
        anchor.update({g: placement for g in placement[0] if present is None or g in present})
    return anchor


def moved_gpus(anchor: Anchor, engines: Iterable[Engine]) -> list[str]:
    """The anchor's GPUs that the engines of a new plan move, sorted (module docstring)."""
    now: dict[str, Placement] = {}
    for engine in engines:
        placement = _placement(engine)
        now.update(dict.fromkeys(placement[0], placement))
    return sorted(g for g, was in anchor.items() if not _same(was, now.get(g)))


def unchanged(anchor: Anchor, group: Iterable[str], role: Role, layout: LayoutKey | None = None) -> bool:
    """Whether a replica is one of the running plan's engines, as it was (GPU set, role, layout)."""
    placement = _placement((group, role, layout))
    return all(g in anchor and _same(anchor[g], placement) for g in placement[0])
