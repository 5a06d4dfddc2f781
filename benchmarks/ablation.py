"""Ablation of the scheduler (issue 3): what do phases 1–2 and the guided refinement buy?

On each paper-style example, with the same wall-time budget per method:
  (a) full      planner.solve: phases 1–2, then bottleneck-guided iterated local search;
  (b) phase 1–2 planner.scheduler.search.initial_states only, best state kept (no refinement);
  (c) random    random swaps: from the TP-friendly blocks (planner.scheduler.partition.make_blocks) with random
                roles, apply a random move of planner.scheduler.refine.candidate_moves, keep it only if it improves;
  (d) genetic   a simple genetic search over (grouping, roles), from the same random starts.
Every method is scored by the same planner.scheduler.scoring.Scorer (max-flow over the cost model) and its best
state is turned into a plan by planner.plans.assemble.assemble, so the columns are directly comparable.
(c) and (d) are baselines for this benchmark only; the paper reports ~1.8× for HexGen-2 over both.

    .venv/bin/python benchmarks/ablation.py [--seconds 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from planner import __version__, solve
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.plans.assemble import assemble
from planner.plans.schema import SolverInfo
from planner.scheduler.partition import make_blocks
from planner.scheduler.refine import candidate_moves
from planner.scheduler.scoring import Scorer, State, canonical
from planner.scheduler.search import initial_states, replica_bytes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ROLES = ("prefill", "decode")
POPULATION = 24  # genetic search: individuals per generation
ELITE = 2  # best individuals copied unchanged into the next generation
TOURNAMENT = 3  # individuals compared to pick one parent


def new_scorer(cluster: Cluster) -> Scorer:
    return Scorer(cluster, launchable=True, objective="throughput")


def plan_throughput(cluster: Cluster, scorer: Scorer, state: State) -> float:
    """Throughput of the plan a state deploys, computed exactly as for the full scheduler's output."""
    plan = assemble(cluster, scorer.assessments(state), SolverInfo(version=__version__))
    return plan.summary.throughput_rps


def full(cluster: Cluster, seconds: float, rng: np.random.Generator, seed: int) -> float:
    return solve(cluster, seed=seed, time_limit=seconds).summary.throughput_rps


def phases_1_2(cluster: Cluster, seconds: float, rng: np.random.Generator, seed: int) -> float:
    scorer = new_scorer(cluster)
    _, states, _ = initial_states(cluster, scorer, seed, time.monotonic() + seconds)
    best = max(states, key=lambda s: scorer.score(s).value)
    return plan_throughput(cluster, scorer, best)


def random_start(cluster: Cluster, rng: np.random.Generator) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """The TP-friendly blocks of phase 1 and a random role (0 prefill, 1 decode) for each."""
    blocks = make_blocks(cluster, replica_bytes(cluster))
    return blocks, rng.integers(0, 2, size=len(blocks))


def random_swaps(cluster: Cluster, seconds: float, rng: np.random.Generator, seed: int) -> float:
    """First-improvement random local search over the scheduler's own move set."""
    deadline = time.monotonic() + seconds
    scorer = new_scorer(cluster)
    blocks, roles = random_start(cluster, rng)
    state = canonical([(b, ROLES[r]) for b, r in zip(blocks, roles)])
    current = scorer.score(state).value
    moves = candidate_moves(scorer, state, "none", rng)
    while moves and time.monotonic() < deadline:
        candidate = moves[int(rng.integers(len(moves)))].apply(state)
        if candidate is not None and (value := scorer.score(candidate).value) > current * (1 + 1e-9):
            state, current = candidate, value
            moves = candidate_moves(scorer, state, "none", rng)
    return plan_throughput(cluster, scorer, state)


def genetic(cluster: Cluster, seconds: float, rng: np.random.Generator, seed: int) -> float:
    """A plain generational GA. Genome: a group label per GPU and a role per label (groups that fit no role
    sit idle). Uniform crossover, mutation moves one GPU to another GPU's group or a fresh one and flips
    one role, tournament selection, elitism. Starts: the phase-1 blocks with random roles, lightly mutated."""
    deadline = time.monotonic() + seconds
    scorer = new_scorer(cluster)
    gpus = [slot.id for slot in cluster.gpus]
    index = {g: i for i, g in enumerate(gpus)}
    n = len(gpus)

    def decode(genome: tuple[np.ndarray, np.ndarray]) -> State:
        labels, roles = genome
        groups: dict[int, list[str]] = {}
        for gpu, label in zip(gpus, labels):
            groups.setdefault(int(label), []).append(gpu)
        return canonical([(tuple(g), ROLES[roles[label]]) for label, g in groups.items()])

    def fitness(genome: tuple[np.ndarray, np.ndarray]) -> float:
        return scorer.score(decode(genome)).value

    def mutate(genome: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        labels, roles = genome[0].copy(), genome[1].copy()
        gpu = int(rng.integers(n))
        labels[gpu] = labels[int(rng.integers(n))] if rng.random() < 0.7 else int(rng.integers(n))
        roles[int(rng.integers(n))] ^= 1
        return labels, roles

    def start() -> tuple[np.ndarray, np.ndarray]:
        blocks, block_roles = random_start(cluster, rng)
        labels = np.zeros(n, dtype=int)
        for label, block in enumerate(blocks):
            labels[[index[g] for g in block]] = label
        roles = rng.integers(0, 2, size=n)  # a role for every possible label
        roles[: len(blocks)] = block_roles
        genome = (labels, roles)
        for _ in range(int(rng.integers(0, 3))):
            genome = mutate(genome)
        return genome

    def tournament(scores: list[float]) -> int:
        picks = rng.choice(POPULATION, size=TOURNAMENT, replace=False)
        return int(max(picks, key=lambda i: scores[i]))

    population = [start() for _ in range(POPULATION)]
    scores = [fitness(g) for g in population]
    while time.monotonic() < deadline:
        order = np.argsort(scores)[::-1]
        children = [population[i] for i in order[:ELITE]]
        while len(children) < POPULATION:
            (la, ra), (lb, rb) = (population[tournament(scores)] for _ in range(2))
            child = (np.where(rng.random(n) < 0.5, la, lb), np.where(rng.random(n) < 0.5, ra, rb))
            children.append(mutate(child))
        population = children
        scores = [fitness(g) for g in population]
    return plan_throughput(cluster, scorer, decode(population[int(np.argmax(scores))]))


METHODS: dict[str, Callable[[Cluster, float, np.random.Generator, int], float]] = {
    "full": full,
    "phases 1–2": phases_1_2,
    "random swaps": random_swaps,
    "genetic": genetic,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wall-time budget of each method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("clusters", type=Path, nargs="*", help="cluster files (default: examples/paper-*.yaml)")
    args = parser.parse_args()
    console = Console()
    catalog = load_catalog()
    table = Table(title=f"ablation: throughput (req/s) with {args.seconds:g} s per method, seed {args.seed}")
    table.add_column("example")
    for name in METHODS:
        table.add_column(name, justify="right")
    table.add_column("full s", justify="right")  # wall time the full scheduler used (it stops when converged)
    for name in list(METHODS)[1:]:
        table.add_column(f"full ÷ {name}", justify="right")
    ratios: dict[str, list[float]] = {name: [] for name in list(METHODS)[1:]}
    for path in args.clusters or sorted(EXAMPLES.glob("paper-*.yaml")):
        cluster = load_cluster(path, catalog)
        results, seconds = {}, {}
        for name, method in METHODS.items():
            began = time.monotonic()
            results[name] = method(cluster, args.seconds, np.random.default_rng(args.seed), args.seed)
            seconds[name] = time.monotonic() - began
            console.log(f"{path.name}: {name} {results[name]:.3f} req/s in {seconds[name]:.1f} s")
        row = [path.name, *(f"{results[name]:.3f}" for name in METHODS), f"{seconds['full']:.1f}"]
        for name in ratios:
            ratio = results["full"] / results[name] if results[name] > 0 else math.inf
            ratios[name].append(ratio)
            row.append(f"{ratio:.2f}×")
        table.add_row(*row)
    geomean = [f"{math.exp(np.mean(np.log(r))):.2f}×" if all(np.isfinite(r)) else "∞" for r in ratios.values()]
    table.add_row("geometric mean", *([""] * (len(METHODS) + 1)), *geomean, end_section=True)
    console.print(table)


if __name__ == "__main__":
    main()
