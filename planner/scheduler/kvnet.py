"""The KV-transfer part of the max-flow network: NICs and links shared by routes, each counted once.

Every route's traffic is measured in shares of shared *hubs* (planner.scheduler.kvload): node u's
outgoing NIC E:u, node v's incoming NIC I:v, the network link L:u|v, each with capacity = bandwidth ÷
KV bytes of a mean request. Two kinds of routes use them:

- pooled: a prefill replica on one node a to a decode replica on another node b whose TP sizes every
  replica pair on (a, b) can use. Their KV goes through the hubs as a path

      P_out ─▶ E:a ─▶ L:a|b ─▶ I:b ─▶ D_in

  and any path through them is a legal route, so the max-flow stays exact with O(#node pairs) arcs
  instead of one per replica pair. (The wire hub is left out when either NIC is no faster than the
  link: it could never bind.)
- explicit: a route with its own arc P_out ─▶ D_in (capacity = its intra-node bound) that also loads
  each hub it crosses by its share: routes of replicas spanning several nodes (a pipeline's stages
  send their own layers: the shares are fractions), and routes between node pairs where some replica
  pair cannot talk (launchability.pair_allowed: TP sizes that do not divide, KV-head replication).
  Routes inside one node are explicit with no shares.

A hub whose capacity is at least everything that could ever cross it is dropped (it can never bind),
which is exact and keeps most networks small. When no share is left on an explicit route the network
is an ordinary max-flow network; otherwise planner.scheduler.maxflow solves it as a linear program.
When nothing in the KV part can bind and every prefill reaches every decode replica, the network is
*free*: its flow is min(Σ prefill, Σ decode) + Σ colocated capacity, and all routes meet in one
junction (`FABRIC`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from planner.costs.kvtransfer import kv_bytes_per_request
from planner.inputs.problem import Cluster
from planner.scheduler.assess import Assessment
from planner.scheduler.flownet import PairArcs
from planner.scheduler.kvload import RouteTraffic, egress, hub_capacity, ingress
from planner.scheduler.launchability import pair_allowed

FABRIC = "F:fabric"  # the junction every route meets in a free network

Traffic = Callable[[Assessment, Assessment], RouteTraffic]


@dataclass(frozen=True)
class KvNetwork:
    direct: dict[tuple[str, str], float]  # (prefill id, decode id) → own-arc capacity, requests/s (inf: none)
    hubs: dict[str, float]  # hub id → capacity, requests/s (inf: a junction)
    hub_arcs: tuple[tuple[str, str], ...]  # (from, to) among prefill ids, hub ids, decode ids
    shares: dict[tuple[str, str], dict[str, float]]  # explicit route → hub → share
    free: bool  # nothing in the KV part can bind (module docstring)
    pairs: PairArcs | None = None  # E:a → I:b arcs of pooled node pairs, as arrays
    unconstrained: bool = False  # the flow is min(Σ prefill, Σ decode) + Σ colocated (free, or shown so)


def home_node(cluster: Cluster, replica: Assessment) -> str | None:
    """The node a replica sits on, or None when its stages span nodes."""
    return replica.nodes[0] if len(replica.nodes) == 1 else None


def kv_network(
    cluster: Cluster,
    prefill: Sequence[Assessment],
    decode: Sequence[Assessment],
    traffic: Traffic,
    *,
    launchable: bool,
    value_only: bool = False,
) -> KvNetwork:
    """Pooled hubs, explicit routes and their shares for every usable route (module docstring).

    `value_only`: the caller needs the flow's value, not its routes; then a network whose wires could
    bind but provably do not (`_PooledPairs.proportional_fits`) comes back without arcs, marked
    `unconstrained` (its value is min(Σ prefill, Σ decode) + Σ colocated).

    Cost: O(#node pairs) numpy work plus O(#explicit routes); pooled routes never need a per-pair traffic.
    """
    side = _Sides.of(cluster, prefill, decode, launchable)
    direct, shares = side.explicit_routes(traffic)
    explicit = _explicit_usage(side, shares)
    pooled = _PooledPairs.of(cluster, side)
    per_request = kv_bytes_per_request(cluster)
    hubs, wires = pooled.binding(explicit)  # pooled NIC hubs and wires (a mask) that can bind
    for hub, used in explicit.items():  # hubs only explicit routes cross
        cap = hub_capacity(cluster, hub, per_request)
        if hub not in hubs and cap < used * (1 + 1e-9):  # a pooled hub `binding` left out cannot bind either
            hubs[hub] = cap
    open_kv = (
        pooled.routes + len(direct) == len(side.prefill) * len(side.decode)
        and not hubs
        and all(cap >= min(side.capacity[p], side.capacity[d]) for (p, d), cap in direct.items())
    )
    if open_kv and not wires.any():
        arcs = {(p.id, FABRIC) for p in prefill} | {(FABRIC, d.id) for d in decode}
        return KvNetwork({}, {FABRIC: math.inf}, tuple(sorted(arcs)), {}, True, unconstrained=True)
    if open_kv and not side.spanning and value_only and pooled.proportional_fits(wires):
        return KvNetwork({}, {}, (), {}, False, unconstrained=True)
    loaded = {h for s in shares.values() for h in s if h[0] == "L" and pooled.wire_binds(h, wires)}
    hubs.update({h: hub_capacity(cluster, h, per_request) for h in loaded})
    shares = {pair: kept for pair, s in shares.items() if (kept := {h: v for h, v in s.items() if h in hubs})}
    arcs, junctions, pairs = pooled.arcs(side, hubs, wires, loaded)
    nodes = set(pairs.tails) | set(pairs.heads) | {h for arc in arcs for h in arc} | set(hubs)
    used = {h: cap for h, cap in {**junctions, **hubs}.items() if h in nodes}
    return KvNetwork(direct, used, arcs, shares, False, pairs)


def _explicit_usage(side: _Sides, shares: Mapping[tuple[str, str], Mapping[str, float]]) -> dict[str, float]:
    """The most explicit routes could put on each hub: Σ over replicas of capacity × largest share, taken
    from the side (prefill or decode) that gives less."""
    worst: dict[tuple[str, str], float] = {}  # (replica, hub) → its largest share on the hub
    for (p, d), pair_shares in shares.items():
        for hub, share in pair_shares.items():
            for rid in (p, d):
                worst[(rid, hub)] = max(worst.get((rid, hub), 0.0), share)
    by_side: dict[str, list[float]] = {}
    for (rid, hub), share in worst.items():
        by_side.setdefault(hub, [0.0, 0.0])[rid not in side.prefill_ids] += share * side.capacity[rid]
    return {hub: min(sums) for hub, sums in by_side.items()}


@dataclass(eq=False)
class _Sides:
    """The replicas by role and node: single-node ones by their node, spanning ones apart."""

    cluster: Cluster
    launchable: bool
    prefill: Sequence[Assessment]
    decode: Sequence[Assessment]
    by_node: dict[str, tuple[list[Assessment], list[Assessment]]]
    spanning: list[tuple[Assessment, int]]  # (replica, 0 prefill | 1 decode)
    capacity: dict[str, float]
    prefill_ids: set[str]

    @classmethod
    def of(
        cls, cluster: Cluster, prefill: Sequence[Assessment], decode: Sequence[Assessment], launchable: bool
    ) -> _Sides:
        by_node: dict[str, tuple[list[Assessment], list[Assessment]]] = {}
        spanning = []
        for role, replicas in ((0, prefill), (1, decode)):
            for a in replicas:
                node = home_node(cluster, a)
                if node is None:
                    spanning.append((a, role))
                else:
                    by_node.setdefault(node, ([], []))[role].append(a)
        capacity = {a.id: a.capacity_rps for a in (*prefill, *decode)}
        return cls(cluster, launchable, prefill, decode, by_node, spanning, capacity, {a.id for a in prefill})

    def usable(self, p: Assessment, d: Assessment) -> bool:
        return not self.launchable or pair_allowed(p.layout.tp, d.layout.tp, self.cluster.model.kv_heads)

    @cached_property
    def senders(self) -> list[str]:
        return sorted(n for n, (s, _) in self.by_node.items() if s)

    @cached_property
    def receivers(self) -> list[str]:
        return sorted(n for n, (_, r) in self.by_node.items() if r)

    def tp_signature(self, node: str, role: int) -> frozenset[int]:
        return frozenset(a.layout.tp for a in self.by_node[node][role])

    def compatible(self, sent: frozenset[int], received: frozenset[int]) -> bool:
        heads = self.cluster.model.kv_heads
        return not self.launchable or all(pair_allowed(tp, tq, heads) for tp in sent for tq in received)

    @cached_property
    def unpooled_pairs(self) -> list[tuple[str, str]]:
        """Node pairs whose routes are explicit: inside one node, or where some replica pair cannot talk."""
        pairs = [(a, a) for a in self.senders if self.by_node[a][1]]
        sizes = ({a.layout.tp for a in self.prefill}, {a.layout.tp for a in self.decode})
        if self.compatible(frozenset(sizes[0]), frozenset(sizes[1])):
            return pairs  # every TP size of a prefill replica works with every decode one
        sent = {a: self.tp_signature(a, 0) for a in self.senders}
        received = {b: self.tp_signature(b, 1) for b in self.receivers}
        if self.compatible(frozenset().union(*sent.values()), frozenset().union(*received.values())):
            return pairs
        return pairs + [(a, b) for a in sent for b in received if a != b and not self.compatible(sent[a], received[b])]

    def explicit_routes(
        self, traffic: Traffic
    ) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], dict[str, float]]]:
        """Own arcs (capacity = intra-node bound) and hub shares of every route that is not pooled."""
        direct: dict[tuple[str, str], float] = {}
        shares: dict[tuple[str, str], dict[str, float]] = {}

        def add(p: Assessment, d: Assessment) -> None:
            if not self.usable(p, d):
                return
            t = traffic(p, d)
            if t.own_rps > 0 and all(hub_capacity(self.cluster, h) > 0 for h, _ in t.shares):
                direct[(p.id, d.id)] = t.own_rps
                shares[(p.id, d.id)] = dict(t.shares)  # empty inside a node: dropped with the hubs' filter

        for a, b in self.unpooled_pairs:
            for p in self.by_node[a][0]:
                for d in self.by_node[b][1]:
                    add(p, d)
        for replica, role in self.spanning:
            for other in self.decode if role == 0 else self.prefill:
                if role == 0:
                    add(replica, other)
                elif home_node(self.cluster, other) is not None:  # both spanning: added from the prefill side
                    add(other, replica)
        return direct, shares


@dataclass
class _PooledPairs:
    """Node pairs (a ≠ b) whose routes share hubs, as numpy masks over senders × receivers.

    All figures in requests/s of mean-request KV: `send`/`recv` the pooled replicas' capacity per node,
    `nic_*` the NICs, `link` the node pair's bandwidth (min of link and NICs; 0 without a link).
    """

    senders: list[str]
    receivers: list[str]
    send: np.ndarray
    recv: np.ndarray
    nic_s: np.ndarray
    nic_r: np.ndarray
    link: np.ndarray
    pooled: np.ndarray  # bool, senders × receivers
    counts: np.ndarray  # replica pairs per node pair

    @cached_property
    def row(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.senders)}

    @cached_property
    def col(self) -> dict[str, int]:
        return {b: j for j, b in enumerate(self.receivers)}

    @classmethod
    def of(cls, cluster: Cluster, side: _Sides) -> _PooledPairs:
        senders, receivers = side.senders, side.receivers
        per_request = kv_bytes_per_request(cluster)
        rows = np.array([cluster.node_index[a] for a in senders], dtype=int)
        cols = np.array([cluster.node_index[b] for b in receivers], dtype=int)
        link = cluster.bandwidth_matrix[np.ix_(rows, cols)] / per_request
        pooled = (rows[:, None] != cols[None, :]) & (link > 0)
        for a, b in side.unpooled_pairs:
            if a != b:
                pooled[senders.index(a), receivers.index(b)] = False
        n_send = np.array([len(side.by_node[a][0]) for a in senders], dtype=float)
        n_recv = np.array([len(side.by_node[b][1]) for b in receivers], dtype=float)
        return cls(
            senders,
            receivers,
            np.array([sum(p.capacity_rps for p in side.by_node[a][0]) for a in senders]),
            np.array([sum(d.capacity_rps for d in side.by_node[b][1]) for b in receivers]),
            np.array([cluster.nodes[i].nic for i in rows]) / per_request,
            np.array([cluster.nodes[j].nic for j in cols]) / per_request,
            link,
            pooled,
            np.outer(n_send, n_recv),
        )

    @property
    def routes(self) -> int:
        """Replica pairs the pooled hubs connect."""
        return int(self.counts[self.pooled].sum())

    def _wires(self) -> np.ndarray:
        """Pooled pairs whose link is slower than both NICs: they need a hub of their own."""
        return self.pooled & (self.link < np.minimum(self.nic_s[:, None], self.nic_r[None, :]))

    def proportional_fits(self, wires: np.ndarray) -> bool:
        """Whether every wire that could bind fits the *proportional* flow: each sender node a spreads
        send_a · V / ΣP over the receiver nodes in proportion to their recv_b · V / ΣD, V = min(ΣP, ΣD),
        so wire a→b carries send_a · recv_b / max(ΣP, ΣD). With no NIC that can bind, every pair
        reachable and every intra-node arc fast enough, that flow is feasible and worth V: the upper
        bound is met and no wire binds (exact; no max-flow needed)."""
        largest = max(float(self.send.sum()), float(self.recv.sum()), 1e-30)
        carried = np.outer(self.send, self.recv) / largest
        return bool(np.all(carried[wires] <= self.link[wires] * (1 - 1e-9)))

    def wire_binds(self, hub: str, wires: np.ndarray) -> bool:
        a, b = hub[2:].split("|")
        return a in self.row and b in self.col and bool(wires[self.row[a], self.col[b]])

    def binding(self, explicit: Mapping[str, float]) -> tuple[dict[str, float], np.ndarray]:
        """The pooled NIC hubs whose capacity is below the most that could cross them (pooled replicas'
        capacity plus explicit routes' `explicit` usage), with their capacity, and the pooled pairs whose
        wire can bind (a mask over senders × receivers): numpy, no loop over node pairs."""
        send = self.send + np.array([explicit.get(egress(a), 0.0) for a in self.senders])
        recv = self.recv + np.array([explicit.get(ingress(b), 0.0) for b in self.receivers])
        rows, cols = self.pooled.any(axis=1), self.pooled.any(axis=0)
        found: dict[str, float] = {}
        for i in np.flatnonzero(rows & (self.nic_s < send * (1 + 1e-9))):
            found[egress(self.senders[i])] = float(self.nic_s[i])
        for j in np.flatnonzero(cols & (self.nic_r < recv * (1 + 1e-9))):
            found[ingress(self.receivers[j])] = float(self.nic_r[j])
        wire_use = np.minimum(self.send[:, None], self.recv[None, :])
        wires = self._wires()
        for name, used in explicit.items():  # explicit routes' shares on pooled wires
            if name[0] == "L":
                a, b = name[2:].split("|")
                if a in self.row and b in self.col and wires[self.row[a], self.col[b]]:
                    wire_use[self.row[a], self.col[b]] += used
        return found, wires & (self.link < wire_use * (1 + 1e-9))

    def arcs(
        self, side: _Sides, hubs: Mapping[str, float], wires: np.ndarray, hub_wires: set[str]
    ) -> tuple[tuple[tuple[str, str], ...], dict[str, float], PairArcs]:
        """P_out → E:a → I:b → D_in for every pooled pair: each E:a → I:b an array arc carrying the wire's
        capacity where it can bind (`wires`), except wires in `hub_wires` (explicit routes load them),
        which stay hubs on the path. NIC hubs that cannot bind are junctions (infinite capacity)."""
        arcs: set[tuple[str, str]] = set()
        junctions: dict[str, float] = {}
        rows, cols = np.nonzero(self.pooled)
        caps = np.where(wires[rows, cols], self.link[rows, cols], math.inf)
        keep = np.ones(len(rows), dtype=bool)
        for w in hub_wires:
            a, b = w[2:].split("|")
            k = np.flatnonzero((rows == self.row[a]) & (cols == self.col[b]))
            keep[k] = False
            arcs.update({(egress(a), w), (w, ingress(b))})
        for i in np.flatnonzero(self.pooled.any(axis=1)):
            e = egress(self.senders[i])
            if e not in hubs:
                junctions[e] = math.inf
            arcs.update((p.id, e) for p in side.by_node[self.senders[i]][0])
        for j in np.flatnonzero(self.pooled.any(axis=0)):
            n = ingress(self.receivers[j])
            if n not in hubs:
                junctions[n] = math.inf
            arcs.update((n, d.id) for d in side.by_node[self.receivers[j]][1])
        sending, receiving = np.flatnonzero(self.pooled.any(axis=1)), np.flatnonzero(self.pooled.any(axis=0))
        row_of, col_of = np.zeros(len(self.senders), dtype=np.int64), np.zeros(len(self.receivers), dtype=np.int64)
        row_of[sending], col_of[receiving] = np.arange(len(sending)), np.arange(len(receiving))
        pairs = PairArcs(
            [egress(self.senders[i]) for i in sending],
            [ingress(self.receivers[j]) for j in receiving],
            row_of[rows[keep]],
            col_of[cols[keep]],
            caps[keep],
        )
        return tuple(sorted(arcs)), junctions, pairs
