"""Ablation of the scheduler (issues 3, 13): what do phases 1–2 and the guided refinement buy?

Methods, each with the same wall-time budget and seed:
  (a) full      planner.solve: phases 1–2, then bottleneck-guided iterated local search (groupings,
                roles, layouts, recruiting idle GPUs);
  (b) phase 1–2 planner.scheduler.search.initial_states only, best state kept (no refinement);
  (c) random    random swaps: from the TP-friendly blocks (scheduler.partition.make_blocks) with random
                roles, apply a random move of scheduler.moves.candidate_moves, keep it only if it improves;
  (d) genetic   a simple genetic search over (grouping, roles), from the same random starts.
Every method is scored by the same scheduler.scoring.Scorer (max-flow over the cost model) and its
best state becomes a plan through plans.assemble, so the columns are directly comparable.

Part 1, the paper's protocol: setting hetero-1 (examples/paper-hetero-1.yaml), the four workload
classes of the Azure conversation trace (HPLD, HPHD, LPHD, LPLD), 15 seeds each. Part 2, where
refinement matters: the failure shapes of issue 13 and the skewed random clusters on which phases 1–2
alone end below 99 % of the exact optimum (planner.reference.exact), each method against it.

    .venv/bin/python benchmarks/ablation.py [--seconds 5] [--seeds 15] [--hard 40] [--skip-paper]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from planner import __version__, solve
from planner.errors import PlannerError
from planner.inputs.catalog import load_catalog
from planner.inputs.cluster import load_cluster
from planner.inputs.problem import Cluster
from planner.inputs.workload import CLASSES, Workload
from planner.plans.assemble import assemble
from planner.plans.schema import SolverInfo
from planner.reference.exact import TooLarge, exact_optimum
from planner.reference.synthetic import FAILURE_SHAPES, skewed_cluster, write_cluster
from planner.scheduler.moves import candidate_moves
from planner.scheduler.partition import make_blocks
from planner.scheduler.scoring import Scorer, State, canonical
from planner.scheduler.search import initial_states, replica_bytes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TRACE = EXAMPLES / "traces" / "AzureLLMInferenceTrace_conv.csv"
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


def run_methods(cluster: Cluster, seconds: float, seed: int) -> dict[str, float]:
    """Each method's throughput on one cluster, each with the same wall-time budget and seed."""
    return {name: method(cluster, seconds, np.random.default_rng(seed), seed) for name, method in METHODS.items()}


def geomean(values: list[float]) -> float:
    return math.exp(float(np.mean(np.log(values)))) if values and all(v > 0 for v in values) else math.nan


def paper_protocol(seeds: int, seconds: float, console: Console) -> None:
    """HexGen-2's ablation setting: hetero-1, the four workload classes, `seeds` seeds, equal time."""
    base = load_cluster(EXAMPLES / "paper-hetero-1.yaml", load_catalog())
    table = Table(
        title=f"ablation, paper protocol: paper-hetero-1, {seeds} seeds × 4 classes, {seconds:g} s per method"
    )
    table.add_column("class")
    for name in METHODS:
        table.add_column(f"{name} req/s (mean)", justify="right")
    for name in list(METHODS)[1:]:
        table.add_column(f"full ÷ {name} (geo, min–max)", justify="right")
    table.add_column("full better / equal / worse vs best other", justify="right")
    for trace_class in CLASSES:
        cluster = dataclasses.replace(base, workload=Workload.from_trace(TRACE, trace_class))
        runs = [run_methods(cluster, seconds, seed) for seed in range(seeds)]
        console.log(f"{trace_class}: done")
        row = [trace_class, *(f"{np.mean([r[name] for r in runs]):.3f}" for name in METHODS)]
        for name in list(METHODS)[1:]:
            ratios = [r["full"] / r[name] for r in runs if r[name] > 0]
            row.append(f"{geomean(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})")
        best_other = [max(r[name] for name in list(METHODS)[1:]) for r in runs]
        better = sum(r["full"] > b * (1 + 1e-6) for r, b in zip(runs, best_other))
        worse = sum(r["full"] < b * (1 - 1e-6) for r, b in zip(runs, best_other))
        row.append(f"{better} / {len(runs) - better - worse} / {worse}")
        table.add_row(*row)
    console.print(table)


def hard_instances(seconds: float, seed: int, console: Console, count: int) -> None:
    """Where refinement matters: the failure shapes of issue 13 and skewed random clusters on which
    phases 1–2 alone end below 99 % of the exact optimum; every method against that optimum."""
    catalog = load_catalog()
    table = Table(title=f"hard instances: share of the exact optimum, {seconds:g} s per method, seed {seed}")
    table.add_column("instance")
    table.add_column("optimum req/s", justify="right")
    for name in METHODS:
        table.add_column(name, justify="right")
    shares: dict[str, list[float]] = {name: [] for name in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        instances = [(name, write_cluster(spec, Path(tmp) / f"{name}.yaml")) for name, spec in FAILURE_SHAPES.items()]
        candidate = 0
        while len(instances) < len(FAILURE_SHAPES) + count:
            spec = skewed_cluster(np.random.default_rng(candidate))
            instances.append((f"skewed seed {candidate}", write_cluster(spec, Path(tmp) / f"s{candidate}.yaml")))
            candidate += 1
        for name, path in instances:
            try:
                cluster = load_cluster(path, catalog)
                optimum = exact_optimum(cluster, time_limit=120).throughput_rps
                if name.startswith("skewed") and phases_1_2(cluster, seconds, None, seed) >= 0.99 * optimum:
                    continue  # phases 1–2 already solve it: not a hard instance
                results = run_methods(cluster, seconds, seed)
            except (PlannerError, TooLarge):
                continue
            if optimum <= 0:
                continue
            table.add_row(name, f"{optimum:.3f}", *(f"{results[m] / optimum:.1%}" for m in METHODS))
            for m in METHODS:
                shares[m].append(results[m] / optimum)
            console.log(f"{name}: done")
    table.add_row("geometric mean", "", *(f"{geomean(v):.1%}" for v in shares.values()), end_section=True)
    table.add_row("minimum", "", *(f"{min(v):.1%}" if v else "" for v in shares.values()))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="wall-time budget of each method")
    parser.add_argument("--seeds", type=int, default=15, help="seeds per workload class (paper protocol)")
    parser.add_argument("--hard", type=int, default=40, help="skewed random clusters screened for hard ones")
    parser.add_argument("--skip-paper", action="store_true")
    args = parser.parse_args()
    console = Console(width=200)
    if not args.skip_paper:
        paper_protocol(args.seeds, args.seconds, console)
    hard_instances(args.seconds, 0, console, args.hard)


if __name__ == "__main__":
    main()
