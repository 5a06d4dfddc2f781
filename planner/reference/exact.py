"""Exhaustive reference planner for small clusters: the optimum the scheduler is measured against.

Independent of the scheduler's search and its pruning. It enumerates
- every grouping of the GPUs: GPUs of one node are interchangeable, so a grouping is a multiset
  partition of the per-node GPU counts (identical groups are also given roles and layouts in one
  canonical order only);
- every role for every group (prefill or decode; a group idles only when it fits neither, since
  adding a replica never lowers the max-flow);
- every layout of every group in its role: TP sizes, pipeline orders of its nodes and layer splits
  (planner.reference.exact_layouts, which keeps per TP and layers-per-node only the fastest split:
  nothing else of a layout reaches the flow network);
and scores every candidate plan with `plan_flow`, the max-flow `evaluate` computes for a plan (NIC
and link hubs, route shares, Edmonds–Karp or the LP). Branch and bound on the capacity bound
min(Σ prefill capacity, Σ decode capacity) skips what cannot beat the best found; nothing else is
pruned. The winner is checked once more through planner.plans.checks.evaluate on its plan.

Exponential: for ≤ ~10 GPUs on a few nodes. Refuses TTFT SLOs (a latency cap breaks the layout
reduction) and raises TooLarge when a group has too many layer vectors, instead of guessing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from planner import __version__
from planner.inputs.problem import Cluster
from planner.reference.exact_bound import Choice, Sink, hull_bound, useful
from planner.reference.exact_layouts import (
    Option,
    TooLarge,
    decode_options,
    option_assessment,
    prefill_options,
)
from planner.reference.exact_layouts import _pipeline as _cached_pipeline
from planner.scheduler.assess import Assessment
from planner.scheduler.network import plan_flow

Vector = tuple[int, ...]
__all__ = ["ExactResult", "TooLarge", "exact_optimum", "vector_partitions"]


def vector_partitions(total: Vector, largest: Vector | None = None) -> Iterator[list[Vector]]:
    """Multiset partitions of a count vector, parts in non-increasing lexicographic order."""
    if not any(total):
        yield []
        return
    for part in itertools.product(*(range(c, -1, -1) for c in total)):
        if not any(part) or (largest is not None and part > largest):
            continue
        rest = tuple(t - p for t, p in zip(total, part))
        for tail in vector_partitions(rest, part):
            yield [part, *tail]


@dataclass(frozen=True)
class ExactResult:
    throughput_rps: float
    replicas: tuple[Assessment, ...]  # the best plan's replicas (those carrying flow)
    scored: int  # candidate plans whose flow was solved
    bounds: int  # LP bounds solved
    seconds: float


@dataclass
class _Search:
    cluster: Cluster
    launchable: bool
    deadline: float | None
    best: float = 0.0
    best_replicas: tuple[Assessment, ...] = ()
    scored: int = 0
    bounds: int = 0
    hulls: dict[tuple[str, ...], list[Choice]] = field(default_factory=dict)
    prefill: dict[tuple[str, ...], list] = field(default_factory=dict)
    decode: dict[tuple[str, ...], list[Assessment]] = field(default_factory=dict)

    def options(self, group: tuple[str, ...], role: str) -> list:
        cache = self.prefill if role == "prefill" else self.decode
        if group not in cache:
            made = prefill_options if role == "prefill" else decode_options
            found = made(self.cluster, group, self.launchable)
            cache[group] = sorted(found, key=lambda a: -a.capacity_rps) if role == "decode" else found
        return cache[group]

    def top(self, group: tuple[str, ...], role: str) -> float:
        found = self.options(group, role)
        return found[0].capacity_rps if found else 0.0

    def grouping_bound(self, groups: list[tuple[str, ...]]) -> float:
        """No role assignment of the grouping can beat min(Σ prefill, Σ decode, ½ Σ max(prefill, decode))."""
        tops = [(self.top(g, "prefill"), self.top(g, "decode")) for g in groups]
        return min(sum(p for p, _ in tops), sum(d for _, d in tops), sum(max(t) for t in tops) / 2)

    def grouping(self, groups: list[tuple[str, ...]], same: list[bool]) -> None:
        """Every role assignment and layout choice for one grouping (`same[i]`: group i equals i − 1)."""
        tops = [(self.top(g, "prefill"), self.top(g, "decode")) for g in groups]
        choices = [[r for r in ("prefill", "decode") if self.options(g, r)] or ["idle"] for g in groups]
        for roles in itertools.product(*choices):
            if any(same[i] and roles[i] < roles[i - 1] for i in range(1, len(roles))):
                continue  # identical groups: roles in one canonical order
            prefill = sum(tops[i][0] for i, r in enumerate(roles) if r == "prefill")
            decode = sum(tops[i][1] for i, r in enumerate(roles) if r == "decode")
            if min(prefill, decode) > self.best:
                order = sorted(range(len(groups)), key=lambda i: (roles[i] != "prefill", i))  # prefill first
                # `twin`: the previous live group is this one's identical twin in the same role
                live = [
                    (groups[i], roles[i], k > 0 and same[i] and order[k - 1] == i - 1 and roles[i - 1] == roles[i])
                    for k, i in enumerate(order)
                    if roles[i] != "idle"
                ]
                self.layouts(live, [], 0, (0.0, prefill, 0.0, decode))

    def layouts(self, live: list, chosen: list, i: int, sums: tuple[float, float, float, float]) -> None:
        """Depth-first over each live group's options, fastest first, cut by the capacity bound and,
        before each prefill group's choice, by the LP bound over the choices left (exact_bound).
        `sums`: (chosen prefill, best of the prefill groups left, chosen decode, best of decode left)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TooLarge("time limit")
        if i == len(live):
            self.score(chosen)
            return
        group, role, twin = live[i]
        if role == "prefill" and self.hull(live, chosen, i) <= self.best:
            return
        top = self.top(group, role)
        first = chosen[-1][1] if twin else 0  # identical twins take options in one canonical order
        for k, option in enumerate(self.options(group, role)[first:], start=first):
            p_sum, p_rest, d_sum, d_rest = sums
            if role == "prefill":
                p_sum, p_rest = p_sum + option.capacity_rps, p_rest - top
            else:
                d_sum, d_rest = d_sum + option.capacity_rps, d_rest - top
            if min(p_sum + p_rest, d_sum + d_rest) <= self.best:
                break  # options are sorted by capacity: the rest bound lower still
            self.layouts(live, [*chosen, (option, k)], i + 1, (p_sum, p_rest, d_sum, d_rest))

    def hull(self, live: list, chosen: list, i: int) -> float:
        """exact_bound.hull_bound with the first i groups' options fixed (prefill groups come first)."""
        if not self.launchable or self.best <= 0:
            return float("inf")  # decode layouts then may span nodes, which the bound does not model
        groups = [[self.choice(option)] for option, _ in chosen]
        groups += [self.useful(g) for g, r, _ in live[i:] if r == "prefill"]
        merged: dict[tuple[str, int], float] = {}
        for g, r, _ in live:
            if r == "decode":
                a = self.options(g, r)[0]
                key = (self.cluster.gpu_by_id[a.layout.gpus[0]].node, a.layout.tp)
                merged[key] = merged.get(key, 0.0) + a.capacity_rps
        sinks = [Sink(node, tp, cap) for (node, tp), cap in sorted(merged.items())]
        self.bounds += 1
        return hull_bound(self.cluster, groups, sinks, self.launchable)

    def useful(self, group: tuple[str, ...]) -> list[Choice]:
        if group not in self.hulls:
            self.hulls[group] = useful([self.choice(o) for o in self.options(group, "prefill")])
        return self.hulls[group]

    @staticmethod
    def choice(option: Option) -> Choice:
        return Choice(option.tp, dict(zip(option.order, option.per_node)), option.capacity_rps)

    def score(self, chosen: list) -> None:
        replicas = [o if isinstance(o, Assessment) else option_assessment(self.cluster, o) for o, _ in chosen]
        self.scored += 1
        flow = plan_flow(self.cluster, replicas, launchable=self.launchable)
        if flow.value > self.best * (1 + 1e-12):
            self.best = flow.value
            self.best_replicas = tuple(a for a in replicas if flow.replica_flow.get(a.id, 0.0) > 0)


def exact_optimum(cluster: Cluster, *, launchable: bool = True, time_limit: float | None = None) -> ExactResult:
    """The best throughput over all groupings × roles × layouts (see module docstring).

    Raises TooLarge when the enumeration is out of reach (too many layer vectors, or `time_limit`
    seconds passed) and ValueError for a cluster with a TTFT SLO."""
    if cluster.slo_ttft is not None:
        raise ValueError("exact_optimum: a TTFT SLO is not supported (the layout reduction assumes none)")
    began = time.monotonic()
    search = _Search(cluster, launchable, None if time_limit is None else began + time_limit)
    counts = tuple(node.count for node in cluster.nodes)
    ids = [[slot.id for slot in cluster.gpus if slot.node == node.name] for node in cluster.nodes]
    candidates = []
    for partition in vector_partitions(counts):
        used = [0] * len(counts)
        groups = []
        for part in partition:
            groups.append(tuple(sorted(g for n, c in enumerate(part) for g in ids[n][used[n] : used[n] + c])))
            used = [u + c for u, c in zip(used, part)]
        same = [i > 0 and partition[i] == partition[i - 1] for i in range(len(partition))]
        candidates.append((search.grouping_bound(groups), len(candidates), groups, same))
    for bound, _, groups, same in sorted(candidates, key=lambda c: (-c[0], c[1])):  # most promising first
        if bound <= search.best:
            break
        search.grouping(groups, same)
    _pipeline_cache_clear()
    _check_with_evaluate(cluster, search.best_replicas, search.best, launchable)
    return ExactResult(search.best, search.best_replicas, search.scored, search.bounds, time.monotonic() - began)


def _pipeline_cache_clear() -> None:
    _cached_pipeline.cache_clear()


def _check_with_evaluate(cluster: Cluster, replicas: Sequence[Assessment], value: float, launchable: bool) -> None:
    """The winner as a plan, through `evaluate` (launch rules, cost model, max-flow): same throughput."""
    if not replicas:
        return
    from planner.plans.assemble import assemble
    from planner.plans.checks import evaluate
    from planner.plans.schema import SolverInfo

    connector = "nixl" if launchable else "none"
    plan = assemble(cluster, list(replicas), SolverInfo(version=__version__, connector=connector))
    honest = evaluate(plan, cluster).summary.throughput_rps
    if abs(honest - value) > 1e-6 * max(value, 1e-12):
        raise AssertionError(f"oracle optimum {value} but evaluate() gives {honest}")
