"""The first cut (planner.provision.cut) against brute force over node counts and replica counts, its
properties under hypothesis, and the replica sizes it may use (planner.provision.kinds)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.provision.cut import EQUAL_GOODPUT, Program, cut_goodput, proposals
from planner.provision.kinds import ReplicaKind, replica_sizes
from planner.provision.offers import Offer, Offers


@pytest.mark.parametrize(
    ("per_node", "nodes", "sizes"),
    [(8, 2, [1, 2, 4, 8, 16]), (6, 1, [1, 2, 6]), (4, 8, [1, 2, 4, 8, 12, 16]), (1, 3, [1, 2, 3]), (3, 1, [1, 3])],
)
def test_replica_sizes_are_a_divisor_chain_inside_a_node_and_whole_nodes_across(per_node, nodes, sizes) -> None:
    assert replica_sizes(per_node, nodes) == sizes
    inside = [s for s in sizes if s <= per_node]
    assert all(b % a == 0 for a, b in itertools.pairwise(inside))


def instance(catalog, seed: int, offers: int = 2) -> tuple[Offers, list[ReplicaKind]]:
    """A small random offers list (1–2 GPUs per node, 1–3 nodes) with random replica capacities."""
    rng = np.random.default_rng(seed)
    gpu = catalog.gpu("L40")
    records, kinds = [], []
    for o in range(offers):
        per_node, nodes = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        price = float(rng.choice([1.0, 1.5, 2.0, 3.0, 4.5]))
        records.append(Offer(o, gpu, per_node, nodes, price, {}))
        for size in replica_sizes(per_node, nodes)[:3]:
            for role in ("prefill", "decode", "colocated"):
                if rng.random() < 0.6:
                    kinds.append(ReplicaKind(o, size, role, float(rng.uniform(0.5, 10) * size**0.8), size, 1))
    return Offers(Path("synthetic.yaml"), tuple(records), {}, "m", 0.0, False), kinds


def brute_force(offers: Offers, kinds: list[ReplicaKind]) -> dict[tuple[int, ...], tuple[float, float]]:
    """Every mix → (best goodput, cost), by enumerating every replica count that fits its GPUs."""
    per_offer = []
    for offer in offers.offers:
        mine = [k for k in kinds if k.offer == offer.index]
        options: dict[int, list[tuple[float, float, float]]] = {}
        for nodes in range(offer.max_nodes + 1):
            room = nodes * offer.gpus_per_node
            found = []
            for counts in itertools.product(*(range(room // k.gpus + 1) for k in mine)):
                if sum(c * k.gpus for c, k in zip(counts, mine)) <= room:
                    sums = {"prefill": 0.0, "decode": 0.0, "colocated": 0.0}
                    for c, k in zip(counts, mine):
                        sums[k.role] += c * k.capacity_rps
                    found.append((sums["prefill"], sums["decode"], sums["colocated"]))
            options[nodes] = found
        per_offer.append(options)
    result = {}
    for mix in itertools.product(*(range(o.max_nodes + 1) for o in offers.offers)):
        best = 0.0
        for parts in itertools.product(*(per_offer[o][n] for o, n in enumerate(mix))):
            p, d, c = (sum(x[i] for x in parts) for i in range(3))
            best = max(best, c + min(p, d))
        result[mix] = (best, sum(o.node_price * n for o, n in zip(offers.offers, mix)))
    return result


@pytest.mark.parametrize("seed", range(12))
def test_the_cut_finds_the_brute_force_optimum(catalog, seed) -> None:
    offers, kinds = instance(catalog, seed)
    table = brute_force(offers, kinds)
    most = max(cost for _, cost in table.values())
    for budget in (most / 3, most / 2, most):
        reachable = {m: v for m, v in table.items() if v[1] <= budget + 1e-9}
        best = max(g for g, _ in reachable.values())
        found = Program(offers, kinds).best(budget=budget)
        if best <= 0:
            assert found is None or found.goodput_rps <= 0
            continue
        assert found is not None and found.cost_per_hour <= budget + 1e-9
        assert best * (1 - EQUAL_GOODPUT) - 1e-9 <= found.goodput_rps <= best + 1e-9
        assert found.goodput_rps <= table[found.mix][0] + 1e-9  # the cut's replicas are a real allocation
        near = [cost for g, cost in reachable.values() if g >= found.goodput_rps - 1e-9]
        assert found.cost_per_hour == pytest.approx(min(near))
    for target in (best * 0.4987, best * 0.9013):  # not exactly a goodput some mix has
        meeting = [(cost, -g) for g, cost in table.values() if g >= target + 1e-7]
        found = Program(offers, kinds).best(target=target)
        assert found is not None
        cost, minus_goodput = min(meeting)
        assert found.cost_per_hour == pytest.approx(cost)
        assert found.goodput_rps == pytest.approx(-minus_goodput, rel=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_proposals_are_distinct_ordered_and_never_supersets_in_budget_mode(catalog, seed) -> None:
    offers, kinds = instance(catalog, seed, offers=3)
    table = brute_force(offers, kinds)
    budget = max(cost for _, cost in table.values()) / 2
    found, solved = proposals(offers, kinds, 5, budget=budget)
    assert solved >= 2 * len(found)
    mixes = [p.mix for p in found]
    assert len(set(mixes)) == len(mixes)
    for earlier, later in itertools.combinations(found, 2):
        assert later.goodput_rps <= earlier.goodput_rps * (1 + 1e-9) + 1e-9
        assert not all(b >= a for a, b in zip(earlier.mix, later.mix)), (earlier.mix, later.mix)
    for p in found:
        assert p.cost_per_hour <= budget + 1e-9
        assert p.goodput_rps == pytest.approx(cut_goodput(p.replicas))
        for offer in offers.offers:  # the replicas fit the rented GPUs
            used = sum(k.gpus * n for k, n in p.replicas if k.offer == offer.index)
            assert used <= p.mix[offer.index] * offer.gpus_per_node
    targeted, _ = proposals(offers, kinds, 5, target=found[0].goodput_rps / 2)
    costs = [p.cost_per_hour for p in targeted]
    assert costs == sorted(costs) and len({p.mix for p in targeted}) == len(targeted)
    assert all(p.goodput_rps >= found[0].goodput_rps / 2 - 1e-6 for p in targeted)


def test_allowed_offers_restrict_the_mix(catalog) -> None:
    offers, kinds = instance(catalog, 3, offers=3)
    for o in range(3):
        found, _ = proposals(offers, kinds, 3, budget=100.0, allowed=frozenset({o}))
        assert all(p.mix[i] == 0 for p in found for i in range(3) if i != o)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), low=st.floats(0.5, 20), extra=st.floats(0, 20))
def test_more_budget_never_lowers_the_cuts_goodput(catalog, seed, low, extra) -> None:
    offers, kinds = instance(catalog, seed, offers=3)
    less, more = Program(offers, kinds).best(budget=low), Program(offers, kinds).best(budget=low + extra)
    if less is not None:
        assert more is not None and more.goodput_rps >= less.goodput_rps * (1 - EQUAL_GOODPUT) - 1e-9


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), share=st.floats(0.05, 1), cheaper=st.floats(0.1, 1), which=st.integers(0, 2))
def test_a_lower_price_never_raises_the_cuts_cost_at_a_fixed_target(catalog, seed, share, cheaper, which) -> None:
    offers, kinds = instance(catalog, seed, offers=3)
    reach = Program(offers, kinds).best()
    if reach is None or reach.goodput_rps <= 0:
        return
    target = share * reach.goodput_rps
    before = Program(offers, kinds).best(target=target)
    records = list(offers.offers)
    records[which] = replace(records[which], price_per_gpu_hour=records[which].price_per_gpu_hour * cheaper)
    after = Program(replace(offers, offers=tuple(records)), kinds).best(target=target)
    assert before is not None and after is not None
    assert after.cost_per_hour <= before.cost_per_hour + 1e-9


def test_replica_kinds_of_a_70b_model(catalog, tmp_path) -> None:
    """Llama-2-70B (140 GB of weights) on 80 GB GPUs: no single-GPU replica; decode never spans nodes (a KV
    connector needs decode PP = 1 and TP stays inside a node); every size is one the offer can form."""
    from planner.provision.kinds import replica_kinds
    from planner.provision.offers import load_offers

    path = tmp_path / "offers.yaml"
    path.write_text(
        "model: llama-2-70b\nworkload: {prompt_tokens: 1024, output_tokens: 256}\n"
        "network: {default: {bandwidth: 100Gbps, latency: 10us}}\n"
        "offers:\n  - {gpu: A100-80G, price: $2/h, gpus_per_node: 4, max_gpus: 12}\n"
    )
    offers = load_offers(path, catalog)
    kinds = replica_kinds(offers, ("prefill", "decode"), True, catalog)
    assert {k.gpus for k in kinds} <= set(replica_sizes(4, 3)) and min(k.gpus for k in kinds) >= 2
    assert all(k.gpus <= 4 for k in kinds if k.role == "decode")
    assert {(k.gpus, k.role) for k in kinds} >= {(4, "prefill"), (4, "decode"), (8, "prefill"), (12, "prefill")}
    assert all(k.capacity_rps > 0 and k.tp * k.pp == k.gpus for k in kinds)
