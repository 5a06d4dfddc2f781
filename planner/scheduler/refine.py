"""Phase 3 of the scheduler: bottleneck-guided local search over groupings and roles.

A move replaces some (group, role) items of the state by others:
- flip      a group's role (prefill, decode, or colocated when allowed);
- split     a group in two (by node, or a node's GPUs in halves);
- merge     two groups that share a node, or where one is idle (fits no role);
- move      one node's share of a group (or half of it) into another group;
- swap      the roles of a prefill and a decode group (targets KV-transfer bottlenecks).
Groups a move creates are tried in every feasible role (≤ 9 combinations), and in small states
(≤ 8 groups) every candidate grouping is also scored with fresh phase-2 roles, so one move can
regroup and re-role at once. The min cut of the current plan says which moves come first:
prefill-bound favours flips to prefill and splits of prefill groups, decode-bound the reverse,
KV-bound swaps. Pairs of far-apart groups are sampled with the caller's numpy Generator.

Each climbing step scores every candidate (or, past `EXHAUSTIVE` of them, the bottleneck moves
plus a sample), applies the best strictly improving move, then greedily re-applies the other
improving moves whose groups are untouched while they still improve, so a large cluster climbs
many moves per step. A climb ends when no move improves. The search climbs from several starts
(phase 1–2 states for different K), then perturbs the best state with a few random moves and
climbs again (iterated local search), until `KICK_PATIENCE` rounds in a row find nothing better,
`KICKS` rounds (more of both for small states), or the deadline.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from planner.scheduler.layouts import node_parts
from planner.scheduler.roles import assign_roles
from planner.scheduler.scoring import Group, Score, Scorer, State, canonical
from planner.types import Role

EXHAUSTIVE = 256  # below this many candidate moves, score them all
SAMPLE = 64  # otherwise score the bottleneck moves and this many others
REROLE_MAX_GROUPS = 8  # up to this many groups, every candidate grouping also gets phase-2 roles
KICKS = 2  # perturb-and-climb rounds after the first climbs, at most (each costs a full climb)
KICK_PATIENCE = 1  # stop kicking after this many rounds in a row find nothing better
SMALL_STATE = 12  # groups; small states climb in milliseconds, so they get more rounds:
SMALL_KICKS, SMALL_PATIENCE = 32, 10
KICK_MOVES = 3  # random moves per perturbation
IMPROVEMENT = 1e-6  # relative gain a move must bring, so float noise never cycles
IDLE: Role = "decode"  # role recorded for a group that fits none; its assessment is None, so it serves nothing

Item = tuple[Group, Role]


@dataclass(frozen=True, order=True)
class Move:
    priority: int  # 0–1: aimed at the current bottleneck
    removed: tuple[Item, ...]
    added: tuple[Item, ...]

    def apply(self, state: State) -> State | None:
        """The state after the move, or None if a group it removes is no longer there."""
        items = list(state)
        for item in self.removed:
            if item not in items:
                return None
            items.remove(item)
        return canonical([*items, *self.added])


@dataclass(frozen=True)
class RefineResult:
    state: State
    iterations: int
    converged: bool


def _halves(scorer: Scorer, group: Group) -> tuple[Group, Group] | None:
    parts = node_parts(scorer.cluster, group)
    if len(parts) > 1:
        cut = len(parts) // 2
        return tuple(g for _, p in parts[:cut] for g in p), tuple(g for _, p in parts[cut:] for g in p)
    gpus = parts[0][1]
    if len(gpus) < 2 or len(gpus) % 2:
        return None
    return tuple(gpus[: len(gpus) // 2]), tuple(gpus[len(gpus) // 2 :])


def _role_choices(scorer: Scorer, groups: tuple[Group, ...]) -> Iterator[tuple[Item, ...]]:
    """Every assignment of feasible roles to the groups a move creates. A group that fits no role
    stays in the state as idle (scored as absent), so a move may park GPUs that a later merge uses."""
    options = [[role for role in scorer.roles if scorer.assessment(g, role) is not None] for g in groups]
    for roles in itertools.product(*(choice or [IDLE] for choice in options)):
        yield tuple((tuple(sorted(g)), r) for g, r in zip(groups, roles))


def _nodes(scorer: Scorer, group: Group) -> set[str]:
    return {scorer.cluster.gpu_by_id[g].node for g in group}


def _pairs(scorer: Scorer, items: list[Item], rng: np.random.Generator, limit: int) -> list[tuple[int, int]]:
    """Pairs worth a two-group move: sharing a node or involving an idle group, plus `limit` random others."""
    near, far = [], []
    for i, (gi, ri) in enumerate(items):
        for j in range(i + 1, len(items)):
            gj, rj = items[j]
            idle = scorer.assessment(gi, ri) is None or scorer.assessment(gj, rj) is None
            (near if idle or _nodes(scorer, gi) & _nodes(scorer, gj) else far).append((i, j))
    if len(far) > limit:
        far = [far[k] for k in sorted(rng.choice(len(far), size=limit, replace=False))]
    return near + far


def candidate_moves(scorer: Scorer, state: State, bottleneck: str, rng: np.random.Generator) -> list[Move]:
    """Every move of the module docstring from `state`, deduplicated and sorted."""
    items = list(state)
    moves: set[Move] = set()
    for item in items:
        group, role = item
        for flipped in scorer.roles:
            if flipped != role:
                moves.add(Move(0 if flipped == bottleneck else 2, (item,), ((group, flipped),)))
        halves = _halves(scorer, group)
        if halves:
            for parts in _role_choices(scorer, halves):
                moves.add(Move(1 if bottleneck == role else 3, (item,), parts))
    for i, j in _pairs(scorer, items, rng, SAMPLE):
        (gi, ri), (gj, rj) = items[i], items[j]
        both = (items[i], items[j])
        if ri != rj:
            moves.add(Move(1 if bottleneck == "kv_transfer" else 3, both, ((gi, rj), (gj, ri))))
        for merged in _role_choices(scorer, (gi + gj,)):
            moves.add(Move(2, both, merged))
        for src, dst in ((gi, gj), (gj, gi)):
            for _, part in node_parts(scorer.cluster, src):
                shares = [part] + ([part[: len(part) // 2]] if len(part) % 2 == 0 and len(part) >= 2 else [])
                for share in shares:
                    if len(share) < len(src):
                        left = tuple(g for g in src if g not in share)
                        for moved in _role_choices(scorer, (left, dst + tuple(share))):
                            moves.add(Move(3, both, moved))
    return sorted(moves)


def _with_roles(scorer: Scorer, state: State, current: Score) -> tuple[State, Score | None]:
    """The state, or the same groups with phase-2 roles if those score higher (small states only).

    Score None: neither can beat `current` (pruned by the capacity bound, no flow solved)."""
    options = [state]
    if len(state) <= REROLE_MAX_GROUPS:
        options.append(assign_roles(scorer, [group for group, _ in state], floor=current.value))
    best: tuple[State, Score | None] = (state, None)
    for option in options:
        if scorer.bound(option) <= current.value + IMPROVEMENT * abs(current.value):
            continue
        score = scorer.score(option)
        if best[1] is None or _better(score, best[1]):
            best = (option, score)
    return best


def _better(score: Score, than: Score) -> bool:
    return score.value > than.value + IMPROVEMENT * abs(than.value) + 1e-12


def _climb(
    scorer: Scorer, state: State, rng: np.random.Generator, deadline: float, on_step: Callable[[float], None] | None
) -> RefineResult:
    """Steepest-ascent hill climbing with greedy batching of compatible improving moves."""
    current = scorer.score(state)
    iterations = 0
    while time.monotonic() < deadline:
        iterations += 1
        moves = candidate_moves(scorer, state, scorer.bottleneck(state), rng)
        if len(moves) > EXHAUSTIVE:
            urgent = [m for m in moves if m.priority <= 1][:SAMPLE]
            others = [m for m in moves if m.priority > 1]
            picked = rng.choice(len(others), size=min(SAMPLE, len(others)), replace=False)
            moves = urgent + [others[k] for k in sorted(picked)]
        improving: list[tuple[float, Move, State]] = []
        for move in moves:
            if time.monotonic() >= deadline:
                return RefineResult(state, iterations, converged=False)
            candidate = move.apply(state)
            if candidate is not None:
                candidate, score = _with_roles(scorer, candidate, current)
                if score is not None and _better(score, current):
                    improving.append((score.value, move, candidate))
        if not improving:
            return RefineResult(state, iterations, converged=True)
        improving.sort(key=lambda entry: (-entry[0], entry[1]))
        state, current = improving[0][2], scorer.score(improving[0][2])
        for _, move, _ in improving[1:]:
            if time.monotonic() >= deadline:
                break
            candidate = move.apply(state)
            if candidate is not None and _better(score := scorer.score(candidate), current):
                state, current = candidate, score
        if on_step:
            on_step(current.throughput_rps)
    return RefineResult(state, iterations, converged=False)


def _kick(scorer: Scorer, state: State, rng: np.random.Generator) -> State:
    """Apply KICK_MOVES random moves, improving or not, to leave a local optimum."""
    for _ in range(KICK_MOVES):
        moves = candidate_moves(scorer, state, "none", rng)
        if not moves:
            break
        state = moves[int(rng.integers(len(moves)))].apply(state) or state
    return state


def refine(
    scorer: Scorer,
    starts: Sequence[State],
    rng: np.random.Generator,
    *,
    deadline: float,
    on_step: Callable[[float], None] | None = None,
) -> RefineResult:
    """Multi-start iterated local search: climb from each start, then repeatedly perturb the best
    state and climb again, keeping the best. Fixed counts, so the seed alone decides the result
    unless the deadline cuts the search short (then `converged` is False)."""
    best: State | None = None
    iterations, converged = 0, True

    def climb(state: State) -> bool:
        nonlocal best, iterations, converged
        result = _climb(scorer, state, rng, deadline, on_step)
        iterations += result.iterations
        converged &= result.converged
        improved = best is None or _better(scorer.score(result.state), scorer.score(best))
        if improved:
            best = result.state
        return improved

    for start in starts:
        climb(start)
    assert best is not None
    small = len(best) <= SMALL_STATE
    kicks, patience = (SMALL_KICKS, SMALL_PATIENCE) if small else (KICKS, KICK_PATIENCE)
    failures = 0
    for _ in range(kicks):
        if failures >= patience:
            break
        if time.monotonic() >= deadline:
            converged = False
            break
        assert best is not None
        failures = 0 if climb(_kick(scorer, best, rng)) else failures + 1
    assert best is not None
    return RefineResult(best, iterations, converged)
