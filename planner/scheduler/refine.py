"""Phase 3 of the scheduler: bottleneck-guided local search over groupings, roles and layouts.

The moves (flip, split, merge, move a node's share, swap roles, change a layout, recruit idle GPUs)
are planner.scheduler.moves. In small states (≤ 8 groups) every candidate grouping is also scored
with fresh phase-2 roles, so one move can regroup and re-role at once.

Each climbing step scores every candidate (or, past `EXHAUSTIVE` of them, the bottleneck moves
plus a sample), applies the best strictly improving move, then greedily re-applies the other
improving moves whose groups are untouched while they still improve, so a large cluster climbs
many moves per step. A climb ends when no move improves. The search climbs from several starts
(phase 1–2 states for different K), then perturbs the best state with a few random moves and
climbs again (iterated local search), until `KICK_PATIENCE` rounds in a row find nothing better,
`KICKS` rounds (more of both for small states), or the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from planner.scheduler.moves import SAMPLE, Move, candidate_moves
from planner.scheduler.roles import assign_roles
from planner.scheduler.scoring import Score, Scorer, State

EXHAUSTIVE = 256  # below this many candidate moves, score them all
REROLE_MAX_GROUPS = 8  # up to this many groups, every candidate grouping also gets phase-2 roles
KICKS = 2  # perturb-and-climb rounds after the first climbs, at most (each costs a full climb)
KICK_PATIENCE = 1  # stop kicking after this many rounds in a row find nothing better
SMALL_STATE = 12  # groups; small states climb in milliseconds, so they get more rounds:
SMALL_KICKS, SMALL_PATIENCE = 32, 10
KICK_MOVES = 3  # random moves per perturbation
IMPROVEMENT = 1e-6  # relative gain a move must bring, so float noise never cycles


@dataclass(frozen=True)
class RefineResult:
    state: State
    iterations: int
    converged: bool


def _with_roles(scorer: Scorer, state: State, current: Score) -> tuple[State, Score | None]:
    """The state, or the same groups with phase-2 roles if those score higher (small states only).

    Score None: neither can beat `current` (pruned by the capacity bound, no flow solved)."""
    options = [state]
    if len(state) <= REROLE_MAX_GROUPS:
        options.append(assign_roles(scorer, [item[0] for item in state], floor=current.value))
    best: tuple[State, Score | None] = (state, None)
    for option in options:
        if scorer.tie_break:  # an equal value may still win on spare capacity
            floor = current.value * (1 - 1e-12)
            if scorer.bound(option, floor) < floor:
                continue
        else:
            floor = current.value + IMPROVEMENT * abs(current.value)
            if scorer.bound(option, floor) <= floor:
                continue
        score = scorer.score(option)
        if best[1] is None or _better(score, best[1]):
            best = (option, score)
    return best


def _better(score: Score, than: Score) -> bool:
    """A higher value; or (small clusters, Scorer.tie_break) the same value with more replica capacity,
    so the climb crosses plateaus where one move frees capacity that the next one puts to use. Values
    never fall along a chain of such steps and capacity rises at equal value, so nothing cycles."""
    if score.value > than.value + IMPROVEMENT * abs(than.value) + 1e-12:
        return True
    return score.tie_break > than.tie_break * (1 + 1e-9) + 1e-12 and score.value >= than.value


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
        improving: list[tuple[float, float, int, Move, State]] = []
        for rank, move in enumerate(moves):
            if time.monotonic() >= deadline:
                return RefineResult(state, iterations, converged=False)
            candidate = move.apply(state)
            if candidate is not None:
                candidate, score = _with_roles(scorer, candidate, current)
                if score is not None and _better(score, current):
                    improving.append((score.value, score.tie_break, rank, move, candidate))
        if not improving:
            return RefineResult(state, iterations, converged=True)
        improving.sort(key=lambda entry: (-entry[0], -entry[1], entry[2]))
        state, current = improving[0][4], scorer.score(improving[0][4])
        for _, _, _, move, _ in improving[1:]:
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
        moves = candidate_moves(scorer, state, "none", rng, recruit=False)
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
