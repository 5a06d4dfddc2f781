"""The simulator's side of the router's in-flight counters (sim.engine.InFlight, read by sim.routing.RoutingPolicy):
after a run that drains — requests finished, dropped at the front, dropped at decode — every replica holds nothing;
while saturated, the policy skips full replicas as the launcher's router does."""

from __future__ import annotations

import math

import numpy as np
import pytest
from builders import cluster, draft_plan, node, replica

from planner.sim.arrivals import Arrivals, poisson
from planner.sim.engine import PrefillServer, Simulation
from planner.sim.metrics import Slo

SLO = Slo(2.0, 0.1)


@pytest.fixture(scope="module")
def setting():
    c = cluster(node("a", "A100-80G", 4), node("l", "L40", 4), prompt=1024, output=256)
    plan = draft_plan(
        c,
        replica(c, "prefill", ["a/0"]),
        replica(c, "prefill", ["l/0"]),
        replica(c, "decode", ["a/1", "a/2"]),
        replica(c, "decode", ["l/1"]),
        replica(c, "colocated", ["l/2"]),
    )
    return c, plan


def drained(sim: Simulation) -> None:
    for server in sim.fronts:
        assert server.outstanding == 0, server.id
        assert sim.in_flight.get(server.id) == 0 and sim.in_flight[server.id] == 0
        if isinstance(server, PrefillServer):
            assert server.kv_used == 0, f"{server.id} still holds KV of shipped requests"
    for server in sim.decodes:
        assert server.outstanding == 0 and server.kv_used == 0, server.id
    assert all(not link.flows for link in sim.links.values())
    assert sim.in_system == 0


def test_every_counter_is_zero_after_a_drained_overloaded_run_with_drops(setting) -> None:
    c, plan = setting
    base = poisson(c.workload, 1.5 * plan.summary.throughput_rps, 30.0, np.random.default_rng(5))
    prompt = base.prompt.copy()
    prompt[::50] = 4000  # longer than max_model_len (2048): dropped on arrival
    sim = Simulation(plan, c, Arrivals(base.time, prompt, base.output), slo=SLO, warmup=0, duration=30, drain=math.inf)
    result = sim.run()
    assert result.dropped >= len(prompt[::50]) and result.finished > 0
    assert result.finished + result.dropped == result.arrived and result.unfinished == 0
    assert sorted(sim.in_flight) == sorted(f.id for f in sim.fronts) and len(sim.in_flight) == len(sim.fronts)
    drained(sim)


def test_a_saturated_front_replica_is_skipped(setting) -> None:
    """40 requests at t = 0: the busiest prefill replica (8 sequences at most) would get half of them by weight;
    it takes 8 and the router sends the rest elsewhere."""
    c, plan = setting
    n = 40
    arrivals = Arrivals(np.zeros(n), np.full(n, 1024), np.full(n, 4))
    sim = Simulation(plan, c, arrivals, slo=SLO, warmup=0, duration=1, drain=math.inf)
    limits = {r.id: r.engine.max_num_seqs for r in plan.replicas}
    counts: dict[str, int] = {}
    for request in sim.run().requests:
        front = sim.fronts[request.front].id
        counts[front] = counts.get(front, 0) + 1
    assert all(counts[f] <= limits[f] for f in counts), (counts, limits)
    assert any(counts[f] == limits[f] for f in counts), "some replica was saturated and then skipped"
    drained(sim)
