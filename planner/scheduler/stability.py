"""Which GPUs of a running plan a new plan moves: the rule re-planning bounds and `hexplan diff` counts.

A GPU *moves* when its engine must restart: it served in the running plan, is still in the cluster,
and now serves in a replica with another GPU set or another role, or not at all. GPUs new to the
plan don't count. Written once, so a plan solved under `--max-moved-gpus N` passes the diff gate
`--max-moved-gpus N`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from planner.types import Role

Placement = tuple[frozenset[str], str]  # (the GPU set of a GPU's replica, its role)
Anchor = Mapping[str, Placement]  # GPU → where it serves in the running plan


def anchor_of(running: Iterable[tuple[Iterable[str], Role]], present: Collection[str] | None = None) -> Anchor:
    """Where each GPU of the running plan's (GPU group, role) pairs serves; GPUs that left the cluster
    (not in `present`, when given) are gone, not moved, so they are left out."""
    anchor: dict[str, Placement] = {}
    for group, role in running:
        gpus = frozenset(group)
        anchor.update({g: (gpus, role) for g in gpus if present is None or g in present})
    return anchor


def moved_gpus(anchor: Anchor, groups: Iterable[tuple[Iterable[str], Role]]) -> list[str]:
    """The anchor's GPUs that the (GPU group, role) pairs of a new plan move, sorted (module docstring)."""
    now: dict[str, Placement] = {}
    for group, role in groups:
        gpus = frozenset(group)
        now.update(dict.fromkeys(gpus, (gpus, role)))
    return sorted(g for g, was in anchor.items() if now.get(g) != was)


def unchanged(anchor: Anchor, group: Iterable[str], role: Role) -> bool:
    """Whether a replica is one of the running plan's, as it was (same GPU set and role)."""
    gpus = frozenset(group)
    return all(anchor.get(g) == (gpus, role) for g in gpus)
