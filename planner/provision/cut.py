"""The first cut: an integer program over node counts that proposes mixes (Mélange-style), solved by HiGHS.

Notation
  o ∈ O        offers; n_o GPUs per node, N_o nodes at most, p_o $ per GPU-hour
  u ∈ U_o      replica kinds of offer o (planner.provision.kinds): s_u GPUs, role r_u, capacity c_u req/s
  x_u ∈ ℤ≥0    replicas of kind u                    (x_u ≤ ⌊n_o N_o / s_u⌋)
  m_o ∈ ℤ      nodes of offer o rented               (0 ≤ m_o ≤ N_o)
  b_ov ∈ {0,1} m_o = v, for v = 0 … N_o              (only to exclude mixes already proposed)
  G ≥ 0        goodput, requests/s
  cost = Σ_o p_o n_o m_o                               ($ per hour)

Constraints
  Σ_{u ∈ U_o} s_u x_u ≤ n_o m_o                   ∀o   replicas fit the rented GPUs (sizes pack: divisor chain)
  G ≤ Σ_{r_u = prefill} c_u x_u + Σ_{r_u = colocated} c_u x_u  prefill capacity, and
  G ≤ Σ_{r_u = decode} c_u x_u + Σ_{r_u = colocated} c_u x_u   decode capacity: rate matching,
                                                          so G = colocated + min(prefill, decode)
  Σ_v b_ov = 1,  m_o = Σ_v v·b_ov                  ∀o
  budget:  cost ≤ B            objective: max G, then min cost with G ≥ (1 − 10⁻³)·G*
  target:  G ≥ T               objective: min cost, then max G with cost ≤ cost*
  excluding a proposed mix m̂: exactly (target)      Σ_o b_{o,m̂_o} ≤ |O| − 1
                               or its supersets (budget)  Σ_o Σ_{v ≥ m̂_o} b_ov ≤ |O| − 1

Ignored here, and left to the full solve: KV-cache links between replicas (NICs and the network), replicas
mixing GPU types, and how the scheduler actually groups GPUs. In budget mode a mix holding a proposed
one is not proposed: the cut gives it no more goodput, only more cost. Each program is small (tens of
integers), so HiGHS solves it in milliseconds; the same input gives the same proposals.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from planner.provision.kinds import ReplicaKind
from planner.provision.mixes import Mix
from planner.provision.offers import Offers

HIGHS_OPTIONS = {"mip_rel_gap": 1e-7}  # these programs are small enough to solve to (near) optimality
EQUAL_GOODPUT = 1e-3  # goodputs this close (relative) count as equal: the cost model is not more precise
EQUAL_COST = 1e-9  # prices are exact


@contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """Silence file descriptor 1 around a HiGHS call: HiGHS 1.12 (scipy 1.17) prints a debugging line to the
    C stdout when it repairs a presolved MIP's solution (ERGO-Code/HiGHS#2783), which would land in the
    middle of `hexplan provision`'s table. Python's own sys.stdout is flushed first and left alone."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. closed): nothing to protect
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class CutMix:
    """A mix the cut proposes, with its estimate of goodput and its exact price."""

    mix: Mix
    goodput_rps: float
    cost_per_hour: float
    replicas: tuple[tuple[ReplicaKind, int], ...]  # the cut's replicas: kind, how many


@dataclass
class Program:
    """The integer program of the module docstring for one offers list and kinds (built once, solved often)."""

    offers: Offers
    kinds: Sequence[ReplicaKind]
    allowed: frozenset[int] | None = None  # offers that may be rented (None: all)
    solved: int = 0  # programs HiGHS solved (for the report)

    def __post_init__(self) -> None:
        offers = self.offers.offers
        self.n_kinds, self.n_offers = len(self.kinds), len(offers)
        self.m0 = self.n_kinds  # index of m_o
        self.g = self.m0 + self.n_offers  # index of G
        self.b0 = []  # index of b_o0 per offer
        at = self.g + 1
        for offer in offers:
            self.b0.append(at)
            at += offer.max_nodes + 1
        self.size = at
        self.rows: list[np.ndarray] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self._structure()

    def _row(self) -> np.ndarray:
        return np.zeros(self.size)

    def _add(self, row: np.ndarray, low: float, high: float) -> None:
        self.rows.append(row)
        self.lower.append(low)
        self.upper.append(high)

    def _structure(self) -> None:
        for o, offer in enumerate(self.offers.offers):
            fit = self._row()
            for u, kind in enumerate(self.kinds):
                if kind.offer == o:
                    fit[u] = kind.gpus
            fit[self.m0 + o] = -offer.gpus_per_node
            self._add(fit, -np.inf, 0.0)
            one, value = self._row(), self._row()
            one[self.b0[o] : self.b0[o] + offer.max_nodes + 1] = 1
            value[self.m0 + o] = 1
            value[self.b0[o] : self.b0[o] + offer.max_nodes + 1] = -np.arange(offer.max_nodes + 1)
            self._add(one, 1.0, 1.0)
            self._add(value, 0.0, 0.0)
        for phase in ("prefill", "decode"):
            rate = self._row()
            rate[self.g] = 1
            for u, kind in enumerate(self.kinds):
                if kind.role in (phase, "colocated"):
                    rate[u] = -kind.capacity_rps
            self._add(rate, -np.inf, 0.0)

    def cost_row(self) -> np.ndarray:
        row = self._row()
        for o, offer in enumerate(self.offers.offers):
            row[self.m0 + o] = offer.node_price
        return row

    def goodput_row(self) -> np.ndarray:
        row = self._row()
        row[self.g] = 1
        return row

    def exclude(self, mix: Mix, supersets: bool) -> None:
        row = self._row()
        for o, nodes in enumerate(mix):
            if supersets:
                row[self.b0[o] + nodes : self.b0[o] + self.offers.offers[o].max_nodes + 1] = 1
            else:
                row[self.b0[o] + nodes] = 1
        self._add(row, -np.inf, self.n_offers - 1)

    def _bounds(self) -> Bounds:
        low, high = np.zeros(self.size), np.ones(self.size)
        for u, kind in enumerate(self.kinds):
            offer = self.offers.offers[kind.offer]
            high[u] = (offer.gpus_per_node * offer.max_nodes) // kind.gpus
        for o, offer in enumerate(self.offers.offers):
            high[self.m0 + o] = offer.max_nodes if self.allowed is None or o in self.allowed else 0
        high[self.g] = np.inf
        return Bounds(low, high)

    def solve(self, objective: np.ndarray, extra: Sequence[tuple[np.ndarray, float, float]]) -> np.ndarray | None:
        """Minimise objective·z under the structure, the exclusions and `extra` rows; None when infeasible."""
        rows = self.rows + [row for row, _, _ in extra]
        constraint = LinearConstraint(
            np.array(rows), self.lower + [low for _, low, _ in extra], self.upper + [high for _, _, high in extra]
        )
        integral = np.ones(self.size)
        integral[self.g] = 0
        self.solved += 1
        bounds = self._bounds()
        with _quiet_c_stdout():
            found = milp(objective, constraints=constraint, integrality=integral, bounds=bounds, options=HIGHS_OPTIONS)
        return found.x if found.success and found.x is not None else None

    def best(self, *, budget: float | None = None, target: float | None = None) -> CutMix | None:
        """The best mix under the budget (max goodput, then min cost) or for the target (min cost, then max
        goodput); None when no mix qualifies."""
        cost, goodput = self.cost_row(), self.goodput_row()
        limits = []
        if budget is not None:
            limits.append((cost, -np.inf, budget))
        if target is not None:
            limits.append((goodput, target, np.inf))
        first, second = (goodput, cost) if target is None else (cost, goodput)
        sign = -1.0 if target is None else 1.0  # maximise goodput first in budget mode
        z = self.solve(sign * first, limits)
        if z is None:
            return None
        best = float(first @ z)
        slack = (EQUAL_GOODPUT if target is None else EQUAL_COST) * max(1.0, abs(best))
        pin = (first, best - slack, np.inf) if target is None else (first, -np.inf, best + slack)
        z = self.solve(-sign * second, [*limits, pin])
        return None if z is None else self._mix(z)

    def _mix(self, z: np.ndarray) -> CutMix:
        mix = tuple(round(z[self.m0 + o]) for o in range(self.n_offers))
        replicas = tuple((kind, round(z[u])) for u, kind in enumerate(self.kinds) if round(z[u]) > 0)
        cost = sum(offer.node_price * nodes for offer, nodes in zip(self.offers.offers, mix))
        return CutMix(mix, cut_goodput(replicas), cost, replicas)


def cut_goodput(replicas: Sequence[tuple[ReplicaKind, int]]) -> float:
    """G = colocated + min(prefill, decode) of these replicas, recomputed exactly from the integer solution
    (the solver's continuous G carries its feasibility tolerance)."""
    capacity = {"prefill": 0.0, "decode": 0.0, "colocated": 0.0}
    for kind, count in replicas:
        capacity[kind.role] += kind.capacity_rps * count
    return capacity["colocated"] + min(capacity["prefill"], capacity["decode"])


def proposals(
    offers: Offers,
    kinds: Sequence[ReplicaKind],
    count: int,
    *,
    budget: float | None = None,
    target: float | None = None,
    allowed: frozenset[int] | None = None,
) -> tuple[list[CutMix], int]:
    """Up to `count` distinct mixes, best first (module docstring), and how many programs were solved."""
    program = Program(offers, kinds, allowed)
    found: list[CutMix] = []
    while len(found) < count:
        best = program.best(budget=budget, target=target)
        if best is None or best.goodput_rps <= 0:
            break
        found.append(best)
        program.exclude(best.mix, supersets=target is None)
    return found, program.solved
