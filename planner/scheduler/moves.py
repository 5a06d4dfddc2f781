"""The refinement's neighbourhood: every move from a state, each replacing some items by others.

- flip      a group's role (prefill, decode, or colocated when allowed);
- split     a group in two (by node, or a node's GPUs in halves);
- merge     two groups that share a node, or where one is idle (fits no role);
- move      one node's share of a group (or half of it) into another group;
- swap      the roles of a prefill and a decode group (targets KV-transfer bottlenecks);
- layout    another layout for a group: layers shifted across a stage boundary, two pipeline nodes
            swapped, another TP size, a KV-local split (planner.scheduler.variants);
- recruit   GPUs that serve nothing — idle groups and replicas the flow leaves empty — pooled per
            node into a new replica, or added to a replica on their node, in every role.
Groups a move creates are tried in every feasible role (≤ 9 combinations) with their default
layouts. The min cut of the current plan says which moves come first: prefill-bound favours flips
to prefill and splits of prefill groups, decode-bound the reverse, KV-bound swaps and layout moves.
Pairs of far-apart groups are sampled with the caller's numpy Generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from planner.scheduler.scoring import Group, Item, Scorer, State
from planner.types import Role

SAMPLE = 64  # far-apart pairs of groups sampled per step
IDLE: Role = "decode"  # role recorded for a group that fits none; its assessment is None, so it serves nothing


@dataclass(frozen=True)
class Move:
    priority: int  # 0–1: aimed at the current bottleneck
    removed: tuple[Item, ...]
    added: tuple[Item, ...]

    def apply(self, state: State) -> State | None:
        """The state after the move, or None if an item it removes is no longer there."""
        items = list(state)
        for item in self.removed:
            if item not in items:
                return None
            items.remove(item)
        return tuple(sorted([*items, *self.added]))  # items of a canonical state and added ones: groups sorted


def halves(scorer: Scorer, group: Group) -> list[tuple[Group, Group]]:
    """Ways to split a group in two: by node (first half of its nodes), or one node's GPUs in halves
    and, when that is not even, one GPU off."""
    parts = scorer.parts(group)
    if len(parts) > 1:
        cut = len(parts) // 2
        return [(tuple(g for _, p in parts[:cut] for g in p), tuple(g for _, p in parts[cut:] for g in p))]
    gpus = tuple(parts[0][1])
    cuts = {len(gpus) // 2, 1} - {0, len(gpus)}
    return [(gpus[:cut], gpus[cut:]) for cut in sorted(cuts)]


def role_choices(scorer: Scorer, groups: tuple[Group, ...]) -> Iterator[tuple[Item, ...]]:
    """Every assignment of feasible roles to the groups a move creates. A group that fits no role
    stays in the state as idle (scored as absent), so a move may park GPUs that a later merge uses."""
    options = [[role for role in scorer.roles if scorer.assessment(g, role) is not None] for g in groups]
    for roles in itertools.product(*(choice or [IDLE] for choice in options)):
        yield tuple((tuple(sorted(g)), r, ()) for g, r in zip(groups, roles))


class _Nodes:
    """Each group's node set, computed once per candidate generation."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.cache: dict[Group, frozenset[str]] = {}

    def __call__(self, group: Group) -> frozenset[str]:
        if group not in self.cache:
            self.cache[group] = frozenset(self.scorer.cluster.gpu_by_id[g].node for g in group)
        return self.cache[group]


def _pairs(scorer: Scorer, items: list[Item], rng: np.random.Generator, limit: int) -> list[tuple[int, int]]:
    """Pairs worth a two-group move: sharing a node or involving an idle group, plus `limit` random others."""
    nodes = _Nodes(scorer)
    idle = [scorer.assessment(*item) is None for item in items]
    by_node: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        for node in nodes(item[0]):
            by_node.setdefault(node, []).append(i)
    near: set[tuple[int, int]] = set()
    for members in by_node.values():
        near.update(itertools.combinations(members, 2))
    idle_ids = [i for i, flag in enumerate(idle) if flag]
    near.update(tuple(sorted((i, j))) for i in idle_ids for j in range(len(items)) if i != j)
    n = len(items)
    total = n * (n - 1) // 2
    if total - len(near) <= limit:
        far = [(i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in near]
    else:
        far_set: set[tuple[int, int]] = set()
        while len(far_set) < limit:
            i, j = sorted(int(k) for k in rng.choice(n, size=2, replace=False))
            if (i, j) not in near:
                far_set.add((i, j))
        far = sorted(far_set)
    return sorted(near) + far


def _group_moves(scorer: Scorer, items: list[Item], bottleneck: str, moves: dict[tuple, Move]) -> None:
    """Flips, splits and layout moves of one group at a time."""
    for item in items:
        group, role, variant = item
        for flipped in scorer.roles:
            if flipped != role:
                _offer(moves, Move(0 if flipped == bottleneck else 2, (item,), ((group, flipped, ()),)))
        for parts in halves(scorer, group):
            for added in role_choices(scorer, parts):
                _offer(moves, Move(1 if bottleneck == role else 3, (item,), added))
        urgent = 1 if bottleneck == "kv_transfer" else 3
        for other in scorer.layout_moves(group, role, variant):
            _offer(moves, Move(urgent, (item,), ((group, role, other),)))


def _pair_moves(
    scorer: Scorer, items: list[Item], pairs: list[tuple[int, int]], bottleneck: str, moves: dict[tuple, Move]
) -> None:
    """Swaps of roles, merges, and moves of a node's share between two groups."""
    for i, j in pairs:
        (gi, ri, _), (gj, rj, _) = items[i], items[j]
        both = (items[i], items[j])
        if ri != rj:
            _offer(moves, Move(1 if bottleneck == "kv_transfer" else 3, both, ((gi, rj, ()), (gj, ri, ()))))
        for merged in role_choices(scorer, (gi + gj,)):
            _offer(moves, Move(2, both, merged))
        for src, dst in ((gi, gj), (gj, gi)):
            for _, part in scorer.parts(src):
                shares = [part] + ([part[: len(part) // 2]] if len(part) % 2 == 0 and len(part) >= 2 else [])
                for share in shares:
                    if len(share) < len(src):
                        left = tuple(g for g in src if g not in share)
                        for moved in role_choices(scorer, (left, dst + tuple(share))):
                            _offer(moves, Move(3, both, moved))


def _recruit_moves(scorer: Scorer, state: State, items: list[Item], moves: dict[tuple, Move]) -> None:
    """Put GPUs that serve nothing to work (module docstring): per node, all of them as a new replica,
    or added to a live replica on that node."""
    served = scorer.details(state).replica_flow
    spare = [item for item in items if (a := scorer.assessment(*item)) is None or served.get(a.id, 0.0) <= 0]
    if not spare:
        return
    nodes = _Nodes(scorer)
    for node in sorted(frozenset().union(*(nodes(item[0]) for item in spare))):
        donors = tuple(item for item in spare if node in nodes(item[0]))
        pool = tuple(g for item in donors for g in item[0] if scorer.cluster.gpu_by_id[g].node == node)
        rest = tuple(g for item in donors for g in item[0] if scorer.cluster.gpu_by_id[g].node != node)
        leftover: tuple[Item, ...] = ((rest, IDLE, ()),) if rest else ()
        for added in role_choices(scorer, (pool,)):
            _offer(moves, Move(1, donors, added + leftover))
        for item in items:
            if item in donors or node not in nodes(item[0]) or scorer.assessment(*item) is None:
                continue
            for added in role_choices(scorer, (item[0] + pool,)):
                _offer(moves, Move(1, (*donors, item), added + leftover))


def _priority(move: Move) -> int:
    return move.priority


def _offer(moves: dict[tuple, Move], move: Move) -> None:
    """Add a move; the same change offered twice (a merge that also recruits idle GPUs) keeps the more
    urgent priority and its first place."""
    key = (move.removed, move.added)
    if key not in moves or move.priority < moves[key].priority:
        moves[key] = Move(min(move.priority, moves[key].priority), *key) if key in moves else move


def candidate_moves(
    scorer: Scorer, state: State, bottleneck: str, rng: np.random.Generator, *, recruit: bool = True
) -> list[Move]:
    """Every move of the module docstring from `state`, deduplicated, by priority and then in the order
    generated (items in state order, pairs sorted): deterministic without sorting whole moves."""
    items = list(state)
    moves: dict[tuple, Move] = {}
    _group_moves(scorer, items, bottleneck, moves)
    _pair_moves(scorer, items, _pairs(scorer, items, rng, SAMPLE), bottleneck, moves)
    if recruit:  # needs the state's flow (which replicas carry requests); kicks skip it
        _recruit_moves(scorer, state, items, moves)
    return sorted(moves.values(), key=_priority)  # stable: generation order within a priority
