"""An upper bound on the flow of every layout choice at once, for the exact oracle's branch and bound.

The oracle (planner.reference.exact) fixes groups and roles, then must choose a layout *option* for
each prefill group (planner.reference.exact_layouts); on slow networks the capacity bound cannot
prune those choices, since the KV links bind. This bound can: let each prefill group p time-share
its options o with weights λ_po (a relaxation: a real plan has one λ = 1), and route x_pob requests/s
of option o to the decode replicas on node b (those of one TP size merged: another relaxation):

    maximise   Σ x_pob
    subject to Σ_o λ_po ≤ 1                            every prefill group p
               Σ_b x_pob ≤ λ_po · capacity_po          every option
               Σ_po x_pob ≤ Σ decode capacity on b     every decode class b
               Σ_pob share_pob(H) · x_pob ≤ c_H        every NIC and link hub H
               x, λ ≥ 0

with the shares of planner.scheduler.kvload's model, written again here from the layers each node
holds: a stage's layers leave its node's NIC, cross the link to b, and enter b's NIC (KV between
stages and decode on the same node crosses no hub). Every real choice of options is feasible, so
the optimum is an upper bound on its flow. Solved with scipy's HiGHS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix
from scipy.spatial import ConvexHull, QhullError

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.inputs.problem import Cluster
from planner.scheduler.launchability import pair_allowed


@dataclass(frozen=True)
class Choice:
    """What the bound reads of a prefill option: TP, layers per node, capacity."""

    tp: int
    layers: Mapping[str, int]
    capacity_rps: float


@dataclass(frozen=True)
class Sink:
    """Decode replicas of one TP size on one node, merged."""

    node: str
    tp: int
    capacity_rps: float


def useful(choices: Sequence[Choice]) -> list[Choice]:
    """The choices the LP can need: per unit of flow a choice costs its group 1/capacity of its time and
    carries shares linear in its layers per node, so a choice whose (layers, 1/capacity) lies above the
    lower convex hull of the others' (same TP) is a mix of them at no more time: drop it. The hull is
    exact in one dimension (two nodes) and comes from qhull above; on a degenerate input all are kept."""
    kept: list[Choice] = []
    by_tp: dict[tuple[int, tuple[str, ...]], list[Choice]] = {}
    for c in choices:
        by_tp.setdefault((c.tp, tuple(sorted(c.layers))), []).append(c)
    for (_, nodes), group in sorted(by_tp.items()):
        if len(nodes) == 1 or len(group) <= 3:
            kept.extend(group)
            continue
        points = np.array([[c.layers[n] for n in nodes[:-1]] + [1.0 / c.capacity_rps] for c in group])
        kept.extend(group[i] for i in sorted(_lower_hull(points)))
    return kept


def _lower_hull(points: np.ndarray) -> set[int]:
    """Indices of the points on the lower convex hull (last coordinate = height)."""
    if points.shape[1] == 2:
        order = sorted(range(len(points)), key=lambda i: (points[i, 0], points[i, 1]))
        hull: list[int] = []
        for i in order:
            while len(hull) >= 2:
                (x1, y1), (x2, y2), (x3, y3) = points[hull[-2]], points[hull[-1]], points[i]
                if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) <= 1e-15 * max(abs(y3), 1e-30):
                    hull.pop()  # the middle point is not below the chord: not on the lower hull
                else:
                    break
            hull.append(i)
        return set(hull)
    try:
        hull = ConvexHull(points)
    except QhullError:
        return set(range(len(points)))
    lower = set()
    for simplex, equation in zip(hull.simplices, hull.equations):
        if equation[-2] < 0:  # outward normal points down: a facet of the lower hull
            lower.update(int(i) for i in simplex)
    return lower or set(range(len(points)))


def _hub_capacity(cluster: Cluster, hub: tuple[str, str, str], per_request: float) -> float:
    kind, a, b = hub
    if kind == "E":
        return cluster.node_by_name[a].nic / per_request
    if kind == "I":
        return cluster.node_by_name[b].nic / per_request
    link = cluster.link(a, b)
    return (link.bandwidth if link else 0.0) / per_request


def hull_bound(cluster: Cluster, groups: Sequence[Sequence[Choice]], sinks: Sequence[Sink], launchable: bool) -> float:
    """The LP of the module docstring: an upper bound on max-flow over every choice of one option per group."""
    layers = cluster.model.layers
    per_request = kv_bytes_per_request(cluster)
    columns: list[tuple[int, int, int]] = []  # x variables: (group, option, sink)
    n_lambda = sum(len(options) for options in groups)
    lam_index, start = [], 0
    for options in groups:
        lam_index.append(list(range(start, start + len(options))))
        start += len(options)
    for p, options in enumerate(groups):
        for o, choice in enumerate(options):
            for s, sink in enumerate(sinks):
                if not launchable or pair_allowed(choice.tp, sink.tp, cluster.model.kv_heads):
                    columns.append((p, o, s))
    if not columns:
        return 0.0
    n = n_lambda + len(columns)
    rows: list[dict[int, float]] = []
    caps: list[float] = []
    for p in range(len(groups)):  # Σ_o λ ≤ 1
        rows.append(dict.fromkeys(lam_index[p], 1.0))
        caps.append(1.0)
    per_option: dict[tuple[int, int], dict[int, float]] = {}
    per_sink: dict[int, dict[int, float]] = {}
    hubs: dict[tuple[str, str, str], dict[int, float]] = {}
    for k, (p, o, s) in enumerate(columns):
        col = n_lambda + k
        per_option.setdefault((p, o), {lam_index[p][o]: -groups[p][o].capacity_rps})[col] = 1.0
        per_sink.setdefault(s, {})[col] = 1.0
        b = sinks[s].node
        for a, m in groups[p][o].layers.items():
            if a == b or m == 0:
                continue
            for hub in (("E", a, ""), ("I", "", b), ("L", a, b)):
                hubs.setdefault(hub, {})
                hubs[hub][col] = hubs[hub].get(col, 0.0) + m / layers
    for row in per_option.values():
        rows.append(row)
        caps.append(0.0)
    for s, row in sorted(per_sink.items()):
        rows.append(row)
        caps.append(sinks[s].capacity_rps)
    for hub in sorted(hubs):
        rows.append(hubs[hub])
        caps.append(_hub_capacity(cluster, hub, per_request))
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [j for row in rows for j in row]
    v = [row[j] for row in rows for j in row]
    objective = np.concatenate([np.zeros(n_lambda), -np.ones(len(columns))])
    result = linprog(objective, A_ub=csr_matrix((v, (r, c)), shape=(len(rows), n)), b_ub=np.array(caps), method="highs")
    if result.status != 0:  # pragma: no cover - x = 0 is feasible and the value is bounded
        raise RuntimeError(f"oracle bound LP failed: {result.message}")
    return float(-result.fun) * (1 + 1e-7) + 1e-9  # a hair above: the bound must never undercut a real plan
