"""The search rules of scheduler.refine, each on a fake scorer whose landscape the test writes by hand.

The real scorer makes every rule depend on flows; here a state is a tuple of integers, its value is what
the test says, and `candidate_moves` / `assign_roles` are replaced by fakes that record what the search asks
for. So each rule is observed directly: how many perturbation rounds run (and when patience stops them),
which moves a large neighbourhood samples, which improvement counts as one, how ties are broken, when
the deadline makes the result unconverged, and that `on_step` hears every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

import planner.scheduler.refine as refine_module
from planner.scheduler.refine import _better, _climb, _with_roles, refine

REROLED = ("rerole",)  # what the fake assign_roles answers: a state that never scores


@dataclass(frozen=True)
class FakeScore:
    value: float
    tie_break: float = 0.0

    @property
    def throughput_rps(self) -> float:
        return self.value * 10


@dataclass
class FakeScorer:
    """value(state) decides the landscape; bound is exact (the score itself)."""

    value: object
    tie_break: bool = False
    extra: object = None  # tie_break(state), when tie_break is on
    scored: list = field(default_factory=list)

    def score(self, state) -> FakeScore:
        self.scored.append(state)
        if state == REROLED:
            return FakeScore(-1.0)
        return FakeScore(self.value(state), self.extra(state) if self.extra else 0.0)

    def bound(self, state, floor: float = float("-inf")) -> float:
        return -1.0 if state == REROLED else self.value(state)

    def bottleneck(self, state) -> str:
        return "prefill"


@dataclass(eq=False)
class FakeMove:
    """Replaces the whole state by `to` (or answers None: the move no longer applies); counts its uses."""

    priority: int
    to: tuple | None = None
    applied: int = 0

    def apply(self, state):
        self.applied += 1
        return self.to


@pytest.fixture
def fakes(monkeypatch):
    """Installs fake candidate moves (per bottleneck) and roles; records every call."""
    calls: list[str] = []
    table: dict[str, object] = {}

    def candidate_moves(scorer, state, bottleneck, rng, *, recruit=True):
        calls.append(bottleneck)
        return table[bottleneck](state)

    monkeypatch.setattr(refine_module, "candidate_moves", candidate_moves)
    monkeypatch.setattr(refine_module, "assign_roles", lambda scorer, groups, floor=0.0: REROLED)
    return SimpleNamespace(calls=calls, table=table)


def state_of(size: int, top: int = 0) -> tuple:
    """`size` groups; `top` is the last item, which the kick moves raise."""
    return (*range(size - 1), 100 + top)


def kicks_run(fakes, size: int, improving: bool) -> int:
    """Perturbation rounds refine runs from one start of `size` groups (climbs find nothing: only kicks move)."""
    fakes.table["prefill"] = lambda state: []
    # a kick move raises the last item by one; the value follows it when kicks improve, else stays flat
    fakes.table["none"] = lambda state: [FakeMove(2, (*state[:-1], state[-1] + 1))]
    scorer = FakeScorer(lambda s: float(s[-1]) if improving else 1.0)
    refine(scorer, [state_of(size)], np.random.default_rng(0), deadline=float("inf"))
    moves_per_kick = 3  # module docstring: a perturbation is a few random moves
    assert fakes.calls.count("none") % moves_per_kick == 0
    return fakes.calls.count("none") // moves_per_kick


def test_a_large_state_stops_kicking_after_one_round_that_finds_nothing(fakes) -> None:
    """13 groups is large (small is ≤ 12): one fruitless perturbation ends the search (patience 1)."""
    assert kicks_run(fakes, 13, improving=False) == 1


def test_a_large_state_is_kicked_at_most_twice_even_when_every_kick_improves(fakes) -> None:
    assert kicks_run(fakes, 13, improving=True) == 2


def test_a_small_state_gets_ten_fruitless_kicks(fakes) -> None:
    """12 groups is still small: patience 10 rounds in a row."""
    assert kicks_run(fakes, 12, improving=False) == 10


def test_a_small_state_is_kicked_at_most_32_times(fakes) -> None:
    assert kicks_run(fakes, 12, improving=True) == 32


def test_a_kick_is_three_random_moves_applied_in_turn(fakes) -> None:
    """Each kick move raises the last item once: one kick of three moves leaves it 3 higher."""
    fakes.table["none"] = lambda state: [FakeMove(2, (*state[:-1], state[-1] + 1))]
    kicked = refine_module._kick(FakeScorer(lambda s: 0.0), state_of(13), np.random.default_rng(0))
    assert kicked == state_of(13, top=3)


def test_a_kick_stops_when_no_move_is_left(fakes) -> None:
    fakes.table["none"] = lambda state: []
    assert refine_module._kick(FakeScorer(lambda s: 0.0), state_of(13), np.random.default_rng(0)) == state_of(13)
    assert fakes.calls == ["none"]


def climb_applies(fakes, priorities: list[int]) -> list[int]:
    """How often a climb applies each of these moves (none applies, so one round of scoring is all)."""
    moves = [FakeMove(p) for p in priorities]
    fakes.table["prefill"] = lambda state: moves
    result = _climb(FakeScorer(lambda s: 1.0), state_of(13), np.random.default_rng(0), float("inf"), None)
    assert result.converged and result.iterations == 1
    return [m.applied for m in moves]


def test_up_to_256_moves_are_all_scored(fakes) -> None:
    assert climb_applies(fakes, [3] * 256) == [1] * 256


def test_past_256_moves_the_urgent_ones_and_64_others_are_scored(fakes) -> None:
    """Priorities 0–1 are urgent (aimed at the bottleneck): all 40 are scored, plus a sample of 64 of the rest."""
    applied = climb_applies(fakes, [0] * 20 + [1] * 20 + [2] * 130 + [3] * 130)
    assert applied[:40] == [1] * 40
    assert sum(applied[40:]) == 64 and max(applied[40:]) == 1


def test_exactly_257_moves_are_sampled(fakes) -> None:
    assert sum(climb_applies(fakes, [3] * 257)) == 64


def test_at_most_64_urgent_moves_are_scored(fakes) -> None:
    """The others sampled are every move of priority 2 or more (here all of priority 2)."""
    applied = climb_applies(fakes, [1] * 100 + [2] * 200)
    assert applied[:64] == [1] * 64 and applied[64:100] == [0] * 36
    assert sum(applied[100:]) == 64


def score(value: float, tie_break: float = 0.0) -> FakeScore:
    return FakeScore(value, tie_break)


@pytest.mark.parametrize(
    ("value", "than", "better"),
    [
        (1 + 1.5e-6, 1.0, True),  # a relative gain above 1e-6 counts
        (1 + 0.8e-6, 1.0, False),  # below it is float noise
        (1.5e-12, 0.0, True),  # from zero, the absolute floor is 1e-12
        (0.8e-12, 0.0, False),
        (1e-12, 0.0, False),  # exactly at the margin is not better
        (1.0, 1.0, False),
    ],
)
def test_a_better_value_must_beat_the_noise_margin(value, than, better) -> None:
    assert _better(score(value), score(than)) is better


@pytest.mark.parametrize(
    ("tie", "than", "better"),
    [
        (1 + 1.5e-9, 1.0, True),  # at equal value, spare capacity up by more than 1e-9 (relative) wins
        (1 + 0.8e-9, 1.0, False),
        (1.5e-12, 0.0, True),  # absolute floor 1e-12
        (0.8e-12, 0.0, False),
    ],
)
def test_at_equal_value_more_spare_capacity_is_better(tie, than, better) -> None:
    assert _better(score(5.0, tie), score(5.0, than)) is better


def test_spare_capacity_never_buys_a_lower_value() -> None:
    assert not _better(score(4.999, 100.0), score(5.0, 1.0))


def test_with_roles_keeps_an_equal_value_when_the_scorer_breaks_ties(fakes) -> None:
    """With tie-breaking on, an option of the same value is still scored (it may win on spare capacity);
    without it, an option must beat the current value by the improvement margin to be scored at all."""
    candidate = state_of(13, top=1)
    ties = FakeScorer(lambda s: 5.0, tie_break=True, extra=lambda s: 2.0)
    state, found = _with_roles(ties, candidate, score(5.0, 1.0))
    assert state == candidate and found == score(5.0, 2.0)
    plain = FakeScorer(lambda s: 5.0)
    assert _with_roles(plain, candidate, score(5.0)) == (candidate, None)


def test_with_roles_prunes_what_cannot_reach_the_current_value_with_ties_on(fakes) -> None:
    scorer = FakeScorer(lambda s: 4.0, tie_break=True, extra=lambda s: 9.0)
    assert _with_roles(scorer, state_of(13), score(5.0)) == (state_of(13), None)
    assert state_of(13) not in scorer.scored


@pytest.mark.parametrize("high_first", [False, True])
def test_equal_values_are_ranked_by_spare_capacity(fakes, high_first) -> None:
    """Two incompatible improving moves of one value: the climb takes the one with more spare capacity,
    whichever was generated first."""
    start, low, high = ((0,),), ((1,),), ((2,),)  # one group each: small states are re-roled too

    class FromStart(FakeMove):
        def apply(self, state):
            return super().apply(state) if state == start else None

    moves = [FromStart(0, high), FromStart(0, low)] if high_first else [FromStart(0, low), FromStart(0, high)]
    fakes.table["prefill"] = lambda state: moves if state == start else []
    scorer = FakeScorer(lambda s: 0.0 if s == start else 5.0, tie_break=True, extra=lambda s: float(s[0][0]))
    result = _climb(scorer, start, np.random.default_rng(0), float("inf"), None)
    assert result.state == high


def test_on_step_hears_the_throughput_after_every_step(fakes) -> None:
    """A chain 0 → 1 → 2 of improving single moves: two steps, each reported (throughput = 10 × value)."""
    fakes.table["prefill"] = lambda state: [FakeMove(0, ((state[0][0] + 1,),))] if state[0][0] < 2 else []
    heard: list[float] = []
    scorer = FakeScorer(lambda s: float(s[0][0]))
    result = _climb(scorer, ((0,),), np.random.default_rng(0), float("inf"), heard.append)
    assert result.state == ((2,),) and result.converged and result.iterations == 3
    assert heard == [10.0, 20.0]


class Clock:
    """A monotonic clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_a_deadline_passed_between_climbs_makes_the_result_unconverged(fakes, monkeypatch) -> None:
    """The start's climb converges (no moves), but the clock passes the deadline before the first kick."""
    clock = Clock()
    monkeypatch.setattr(refine_module, "time", clock)

    def no_moves(state):
        clock.now = 5.0  # exactly the deadline: that is past it
        return []

    fakes.table["prefill"] = no_moves
    result = refine(FakeScorer(lambda s: 1.0), [state_of(13)], np.random.default_rng(0), deadline=5.0)
    assert not result.converged and result.state == state_of(13)
    assert "none" not in fakes.calls  # no kick once the deadline has passed


def test_a_kick_climb_cut_by_the_deadline_makes_the_result_unconverged(fakes, monkeypatch) -> None:
    """The deadline passes during a kick: its climb stops unconverged; patience then ends the search, and the
    result still says it was cut short."""
    clock = Clock()
    monkeypatch.setattr(refine_module, "time", clock)
    fakes.table["prefill"] = lambda state: []

    def kick(state):
        clock.now = 10.0
        return [FakeMove(2, state)]

    fakes.table["none"] = kick
    result = refine(FakeScorer(lambda s: 1.0), [state_of(13)], np.random.default_rng(0), deadline=5.0)
    assert not result.converged


def test_the_best_of_several_starts_wins_and_iterations_add_up(fakes) -> None:
    fakes.table["prefill"] = lambda state: []
    fakes.table["none"] = lambda state: []
    starts = [state_of(13, top=t) for t in (1, 3, 2)]
    result = refine(FakeScorer(lambda s: float(s[-1])), starts, np.random.default_rng(0), deadline=float("inf"))
    assert result.state == state_of(13, top=3) and result.converged
    assert result.iterations == 3 + 1  # one round per start, one per kick climb (patience 1)


def test_a_climb_stops_scoring_moves_the_moment_the_deadline_is_reached(fakes, monkeypatch) -> None:
    """The first move's scoring takes the clock exactly to the deadline: the climb returns its state unchanged
    and unconverged, without applying the (improving) second move."""
    clock = Clock()
    monkeypatch.setattr(refine_module, "time", clock)

    class SlowMove(FakeMove):
        def apply(self, state):
            clock.now = 5.0
            return super().apply(state)

    first, second = SlowMove(0, state_of(13, top=1)), FakeMove(0, state_of(13, top=2))
    fakes.table["prefill"] = lambda state: [first, second]
    result = _climb(FakeScorer(lambda s: float(s[-1])), state_of(13), np.random.default_rng(0), 5.0, None)
    assert (result.state, result.converged, result.iterations) == (state_of(13), False, 1)
    assert second.applied == 0


def test_improving_moves_on_untouched_groups_are_batched_until_the_deadline(fakes, monkeypatch) -> None:
    """Two improving moves: the best is taken, and the other is re-applied in the same step, unless the
    clock has reached the deadline by then."""
    clock = Clock()
    monkeypatch.setattr(refine_module, "time", clock)
    start, both = ((0,), (1,)), ((3,), (2,))

    class Raise:
        """Moves that raise one item; the second applies on top of the first."""

        def __init__(self, priority, index, to) -> None:
            self.priority, self.index, self.to = priority, index, to

        def apply(self, state):
            items = list(state)
            items[self.index] = (self.to,)
            return tuple(items)

    fakes.table["prefill"] = lambda state: [Raise(0, 1, 2), Raise(0, 0, 3)] if state == start else []
    scorer = FakeScorer(lambda s: float(sum(item[0] for item in s)))
    assert _climb(scorer, start, np.random.default_rng(0), 5.0, None).state == both

    best_alone = ((3,), (1,))
    original = scorer.score

    def score(state):
        if state == best_alone:  # scoring the best move takes the clock to the deadline
            clock.now = 5.0
        return original(state)

    scorer.score = score
    result = _climb(scorer, start, np.random.default_rng(0), 5.0, None)
    assert result.state == best_alone and not result.converged


def test_the_best_improving_move_is_taken_though_generated_last(fakes) -> None:
    """Two improving moves that exclude each other (each applies only to the start): the higher value wins."""
    start, good, best = state_of(13), state_of(13, top=1), state_of(13, top=5)

    class FromStart(FakeMove):
        def apply(self, state):
            return super().apply(state) if state == start else None

    fakes.table["prefill"] = lambda state: [FromStart(0, good), FromStart(0, best)] if state == start else []
    result = _climb(FakeScorer(lambda s: float(s[-1])), start, np.random.default_rng(0), float("inf"), None)
    assert result.state == best and result.converged


def small_state(size: int, top: int = 0) -> tuple:
    """`size` one-group items (tuples, as assign_roles reads item[0]); the last one's number is `top`."""
    return (*(((k,),) for k in range(size - 1)), ((100 + top,),))


def test_states_of_up_to_eight_groups_are_also_tried_with_fresh_roles(monkeypatch) -> None:
    asked: list[list] = []
    rerolled = small_state(8, top=9)

    def assign_roles(scorer, groups, floor=0.0):
        asked.append(groups)
        return rerolled

    monkeypatch.setattr(refine_module, "assign_roles", assign_roles)
    scorer = FakeScorer(lambda s: float(s[-1][0][0]))
    state, found = _with_roles(scorer, small_state(8, top=1), score(50.0))
    assert (state, found) == (rerolled, score(109.0))  # fresh roles score higher than the state itself
    assert asked == [[(k,) for k in range(7)] + [(101,)]]
    asked.clear()
    _with_roles(scorer, small_state(9, top=1), score(50.0))
    assert asked == []  # nine groups: no re-roling


def test_fresh_roles_that_only_tie_leave_the_state_as_it_is(monkeypatch) -> None:
    monkeypatch.setattr(refine_module, "assign_roles", lambda scorer, groups, floor=0.0: small_state(3, top=7))
    scorer = FakeScorer(lambda s: 1.0 if s[-1][0][0] >= 100 else 0.0)
    assert _with_roles(scorer, small_state(3, top=1), score(0.5)) == (small_state(3, top=1), score(1.0))


@pytest.mark.parametrize(("bound", "scored"), [(1 - 0.8e-12, True), (1 - 1.5e-12, False)])
def test_with_ties_on_an_option_within_1e_12_below_the_current_value_is_still_scored(fakes, bound, scored) -> None:
    """Tie-breaking scorers prune only options whose bound is below the current value by more than 1e-12."""
    scorer = FakeScorer(lambda s: bound, tie_break=True, extra=lambda s: 3.0)
    _, found = _with_roles(scorer, state_of(13), score(1.0, 1.0))
    assert (found is not None) is scored


@pytest.mark.parametrize(("gain", "scored"), [(1e-6, False), (2e-6, True)])
def test_without_ties_an_option_must_bound_above_the_improvement_margin(fakes, gain, scored) -> None:
    """The bound must exceed current + 1e-6 × |current|: exactly that much is pruned unscored."""
    scorer = FakeScorer(lambda s: 1.0 + gain * abs(1.0))
    _, found = _with_roles(scorer, state_of(13), score(1.0))
    assert (found is not None) is scored
    assert (state_of(13) in scorer.scored) is scored
