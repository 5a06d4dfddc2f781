"""Max-flow with side loads, as a linear program: routes whose KV crosses a hub only in part.

A route of a prefill replica pipelined over nodes a and b sends each stage's layers from its own
node: per request, share φ_a of the KV leaves a's NIC and φ_b leaves b's. Such a route has its own
arc P_out → D_in, and every hub it crosses must also carry φ × the arc's flow. A max-flow cannot
express fixed fractions, so (notation of planner.scheduler.maxflow; f_e the flow on arc e):

    maximise   Σ f(source → ·)
    subject to Σ f(· → v) = Σ f(v → ·)                      every node v but source and sink
               0 ≤ f_e ≤ c_e                                every arc (no bound where c_e = ∞)
               f(H_in → H_out) + Σ_r φ_{r,H} f_r ≤ c_H      every hub H some explicit route r loads

solved with scipy's HiGHS (`linprog`). Without side loads this is the max-flow LP and gives the same
value. The minimum cut by kind comes from the duals: Σ |dual| × capacity of the bounds and hub rows
that bind, which adds up to the flow value (LP duality), as a max-flow's min cut does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

from planner.scheduler.flownet import SOURCE, Network


def lp_flow(net: Network, shares: Mapping[tuple[str, str], Mapping[str, float]]) -> tuple[np.ndarray, float, dict]:
    """(flow on each arc of `net`, value, min-cut capacity by kind); see the module docstring."""
    n_arcs = len(net.tails)
    tails, heads = net.tails, net.heads
    inner = np.arange(2, net.nodes)
    # conservation: +1 where an arc enters the node, −1 where it leaves (rows = nodes 2…)
    rows = np.concatenate([heads, tails])
    cols = np.concatenate([np.arange(n_arcs), np.arange(n_arcs)])
    vals = np.concatenate([np.ones(n_arcs), -np.ones(n_arcs)])
    keep = rows >= 2
    a_eq = csr_matrix((vals[keep], (rows[keep] - 2, cols[keep])), shape=(len(inner), n_arcs))
    position = {(tail, head): i for i, (tail, head) in enumerate(zip(tails.tolist(), heads.tolist()))}
    side_rows, side_caps = [], []
    loads: dict[str, list[tuple[int, float]]] = {}
    for (p, d), hub_shares in sorted(shares.items()):
        arc = position.get((net.index[p] + 1, net.index[d]))
        if arc is None:
            continue
        for hub, share in sorted(hub_shares.items()):
            loads.setdefault(hub, []).append((arc, share))
    for hub in sorted(loads):
        row = dict(loads[hub])
        hub_arc = position[(net.index[hub], net.index[hub] + 1)]
        row[hub_arc] = row.get(hub_arc, 0.0) + 1.0
        side_rows.append(row)
        side_caps.append(net.hubs[hub])
    a_ub = None
    if side_rows:
        r = [i for i, row in enumerate(side_rows) for _ in row]
        c = [j for row in side_rows for j in row]
        v = [row[j] for row in side_rows for j in row]
        a_ub = csr_matrix((v, (r, c)), shape=(len(side_rows), n_arcs))
    objective = np.where(tails == SOURCE, -1.0, 0.0)
    bounds = [(0.0, None if math.isinf(cap) else cap) for cap in net.caps.tolist()]
    result = linprog(
        objective,
        A_ub=a_ub,
        b_ub=np.array(side_caps) if side_rows else None,
        A_eq=a_eq,
        b_eq=np.zeros(len(inner)),
        bounds=bounds,
        method="highs",
    )
    if result.status != 0:  # pragma: no cover - the zero flow is always feasible and the value bounded
        raise RuntimeError(f"KV flow LP failed: {result.message}")
    flows = np.clip(result.x, 0.0, None)
    cut: dict[str, float] = {}
    for cap, kind, dual in zip(net.caps.tolist(), net.kinds, result.upper.marginals):
        if dual < 0 and not math.isinf(cap):
            cut[kind] = cut.get(kind, 0.0) - dual * cap
    for cap, dual in zip(side_caps, result.ineqlin.marginals if side_rows else ()):
        if dual < 0:
            cut["kv_transfer"] = cut.get("kv_transfer", 0.0) - dual * cap
    return flows, float(-result.fun), {kind: value for kind, value in cut.items() if value > 1e-12}
