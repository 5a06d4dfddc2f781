"""Mutation testing of the cost model, the scheduler, the simulator and the router (`make mutate`).

    .venv/bin/python scripts/mutate.py [--mutants 300] [--seed 0] [--jobs 2] [--minutes M] [--list] [--keep] [PATH ...]
    .venv/bin/python scripts/mutate.py planner/costs/fit.py --tests tests/test_calibration.py --mutants 0 --jobs 1

Every mutant of scripts/mutation/operators.py is enumerated over planner/costs/, planner/scheduler/, planner/sim/
and the router (launcher/router.py, planner/sim/routing.py); `--mutants N` samples N of them with `--seed` (0: all).
One coverage run of the test suite says which tests execute each line (golden-plan tests, Ray tests and the
architecture test are left out: a mutant must be caught by a test of behaviour, not by a whole pinned plan); then
each mutant runs those tests in a private copy of the repository (scripts/mutation/runner.py), `--jobs` at a time,
fastest first, until one fails or `--budget` seconds of them (as timed in the coverage run) have passed. Mutants
run in a seeded random order; `--minutes M` stops starting new ones after M minutes, so those tested are a uniform
sub-sample of the sample (the report says how many).

`--rerun out/mutation/report.json` tests only the survivors of an earlier run (of unchanged code: a mutant is
known by file, line, column and mutation). `--tests T ...` is the quick loop of someone writing tests for one
module: no coverage run; every mutant runs exactly those tests (files or node ids; a mutant they do not execute
survives). Its rate is a lower bound of what the whole suite kills, not the figure RESULTS.md records.

Prints the kill rate per package and overall (killed + timed out over all sampled mutants, a mutant no test
executes counting as a survivor), then every survivor as file:line, mutation and source line. Survivors listed in
scripts/mutation/equivalent/*.yaml (mutants that change no observable behaviour, each with its reason; one file
a package) are marked and a second rate leaves them out; a third ("w/o exact") leaves out only the exact ones,
counting those equivalent only up to float tolerance or an optimiser's numerics (`numerical: true`) as
survivors. The whole result goes to out/mutation/report.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mutation.operators import Mutant, mutants  # noqa: E402
from mutation.runner import (  # noqa: E402
    GOLDEN,
    GOLDEN_SELECTION,
    PYTEST,
    SELECTION,
    Job,
    Outcome,
    coverage_map,
    environment,
    make_copy,
    preload,
    run_jobs,
)

ROUTER = ("launcher/router.py", "planner/sim/routing.py")
PACKAGES = {"costs": "planner/costs/", "scheduler": "planner/scheduler/", "sim": "planner/sim/", "router": ""}
EQUIVALENT = ROOT / "scripts" / "mutation" / "equivalent"  # one YAML file a package
KILLED = ("killed", "timeout")


class Equivalent(NamedTuple):
    """Why a listed mutant cannot change behaviour; `numerical`: only up to float tolerance, an optimiser's
    numerics (a start point, a unit, an iteration cap) or a clock reading, so the "w/o exact" rate counts it."""

    reason: str
    numerical: bool = False


def package_of(path: str) -> str:
    if path in ROUTER:
        return "router"
    return next(name for name, prefix in PACKAGES.items() if prefix and path.startswith(prefix))


def target_files(paths: Sequence[str]) -> list[str]:
    found = set()
    for path in paths or [*(p for p in PACKAGES.values() if p), *ROUTER]:
        full = ROOT / path
        files = sorted(full.rglob("*.py")) if full.is_dir() else [full]
        found.update(f.relative_to(ROOT).as_posix() for f in files if f.name != "__init__.py")
    return sorted(found)


def sample(all_mutants: list[Mutant], count: int, seed: int) -> list[Mutant]:
    if count <= 0 or count >= len(all_mutants):
        return all_mutants
    return sorted(random.Random(seed).sample(all_mutants, count))


def equivalents() -> dict[tuple[str, str, str, int | None], Equivalent]:
    """(file, stripped source line, mutation, column or None for any) → why the mutant cannot change behaviour."""
    files = sorted(EQUIVALENT.glob("*.yaml"))
    entries = [e for f in files for e in yaml.safe_load(f.read_text(encoding="utf-8")) or []]
    return {
        (e["file"], e["line"].strip(), e["mutation"], e.get("col")): Equivalent(e["reason"], bool(e.get("numerical")))
        for e in entries
    }


def survivors_of(report: Path) -> set[tuple[str, int, int, str]]:
    """(file, line, column, mutation) of the survivors a previous run's report.json lists (--rerun)."""
    found = json.loads(report.read_text(encoding="utf-8"))["survivors"]
    return {(s["file"], s["line"], s["col"], s["mutation"]) for s in found}


def source_line(mutant: Mutant) -> str:
    return (ROOT / mutant.path).read_text(encoding="utf-8").splitlines()[mutant.lineno - 1].strip()


def planned_jobs(chosen: list[Mutant], copy: Path, work: Path, factor: float, budget: float) -> list[Job]:
    """Each mutant with the tests that execute its line (one coverage run, cached), within `budget` seconds."""
    started = time.monotonic()
    covered = coverage_map(copy, sorted({m.path for m in chosen}), work, cache=ROOT / "out" / "mutation")
    print(f"coverage run: {len(covered.seconds)} tests in {time.monotonic() - started:.0f} s", flush=True)
    for test in covered.failed:
        print(f"left out (fails in a copy of the repository without any mutation): {test}", flush=True)
    sources = {path: (ROOT / path).read_text(encoding="utf-8") for path in {m.path for m in chosen}}
    jobs = []
    for mutant in chosen:
        tests = covered.tests_for(mutant, sources[mutant.path], budget)
        jobs.append(Job(mutant, tests, factor * covered.seconds_of(tests) + 20.0))
    return jobs


def given_tests_jobs(chosen: list[Mutant], tests: list[str], copy: Path, factor: float) -> list[Job]:
    """Every mutant with the same tests (--tests); timed once unmutated, which must pass."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", *PYTEST, *SELECTION, *tests], cwd=copy,
                          env=environment(copy), capture_output=True, text=True)  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"mutate.py: the tests given with --tests fail without any mutation:\n{done.stdout[-3000:]}")
    print(f"unmutated run of the given tests: {seconds:.1f} s", flush=True)
    return [Job(mutant, tests, factor * seconds + 20.0) for mutant in chosen]


def run_all(
    chosen: list[Mutant], jobs: int, work: Path, factor: float, budget: float, golden: bool = False,
    tests: list[str] | None = None, minutes: float = math.inf, seed: int = 0,
) -> list[Outcome]:  # fmt: skip
    """Every chosen mutant's outcome; with `minutes`, those tested within that time, in a seeded random order so
    that they are a uniform sub-sample of the chosen ones."""
    copies = [make_copy(ROOT, work / f"w{i}") for i in range(jobs)]
    if tests:
        work_list = given_tests_jobs(chosen, tests, copies[0], factor)
    else:
        work_list = planned_jobs(chosen, copies[0], work, factor, budget)
    random.Random(seed).shuffle(work_list)
    stop_at = time.monotonic() + minutes * 60.0
    count = 0

    def done(outcome: Outcome) -> None:
        nonlocal count
        count += 1
        m = outcome.mutant
        by = f"  by {outcome.killer}" if outcome.killer else ""
        print(f"[{count}/{len(chosen)}] {outcome.status:9} {outcome.seconds:5.1f} s  {m.path}:{m.lineno}:{m.col}  "
              f"{m.description}{by}", flush=True)  # fmt: skip

    preload()
    outcomes = run_jobs(work_list, copies, done, stop_at)
    if len(outcomes) < len(work_list):
        print(f"--minutes: {len(work_list) - len(outcomes)} mutants not tested in time are left out", flush=True)
    if golden:
        survivors = [Job(o.mutant, list(GOLDEN), 120.0, GOLDEN_SELECTION) for o in outcomes if o.status not in KILLED]
        print(f"golden-plan tests on the {len(survivors)} survivors", flush=True)
        count, chosen = 0, [job.mutant for job in survivors]
        caught = {o.mutant for o in run_jobs(survivors, copies, done) if o.status in KILLED}
        outcomes = [replace(o, golden=o.mutant in caught) for o in outcomes]
    return sorted(outcomes, key=lambda o: o.mutant)


def report(outcomes: list[Outcome], known: dict[tuple[str, str, str, int | None], Equivalent]) -> dict:
    """Kill rates per package and overall, raw and without the known equivalent mutants; the survivors."""
    rows: dict[str, Counter] = {}
    survivors = []
    for o in outcomes:
        counts = rows.setdefault(package_of(o.mutant.path), Counter())
        counts[o.status] += 1
        counts["golden"] += o.golden
        if o.status in ("survived", "uncovered"):
            line = source_line(o.mutant)
            key = (o.mutant.path, line, o.mutant.description)
            listed = known.get((*key, o.mutant.col)) or known.get((*key, None))
            counts["equivalent"] += listed is not None
            counts["numerical"] += listed is not None and listed.numerical
            mutated = o.mutant.apply((ROOT / o.mutant.path).read_text(encoding="utf-8")).splitlines()
            survivors.append({"file": o.mutant.path, "line": o.mutant.lineno, "col": o.mutant.col,
                              "mutation": o.mutant.description, "source": line, "status": o.status,
                              "mutated": mutated[o.mutant.lineno - 1].strip(),
                              "equivalent": listed.reason if listed else None, "golden": o.golden})  # fmt: skip
    rows["overall"] = sum(rows.values(), Counter())
    table = {}
    for name, c in rows.items():
        scored = sum(c[s] for s in (*KILLED, "survived", "uncovered"))
        killed = sum(c[s] for s in KILLED)
        exact = c["equivalent"] - c["numerical"]
        table[name] = {
            "mutants": scored,
            "killed": killed,
            "survived": c["survived"] + c["uncovered"],
            "uncovered": c["uncovered"],
            "equivalent": c["equivalent"],
            "errors": c["error"],
            "kill_rate": killed / scored if scored else 0.0,
            "numerical": c["numerical"],
            "kill_rate_without_equivalent": killed / (scored - c["equivalent"]) if scored > c["equivalent"] else 0.0,
            "kill_rate_without_exact_equivalent": killed / (scored - exact) if scored > exact else 0.0,
            "killed_by_golden_only": c["golden"],
            "kill_rate_with_golden": (killed + c["golden"]) / scored if scored else 0.0,
        }
    return {"packages": table, "survivors": survivors}


def print_report(result: dict, args: argparse.Namespace, seconds: float) -> None:
    print(f"\nmutation testing: {args.mutants or 'all'} mutants, seed {args.seed}, {args.jobs} jobs, {seconds:.0f} s")
    print(f"{'package':10} {'mutants':>7} {'killed':>7} {'survived':>8} {'(no test)':>9} {'equiv.':>6} "
          f"{'kill rate':>9} {'w/o equiv.':>10} {'w/o exact':>9} {'+golden':>8}")  # fmt: skip
    for name, row in result["packages"].items():
        golden = f"{row['kill_rate_with_golden']:8.1%}" if args.golden else f"{'-':>8}"
        rates = f"{row['kill_rate']:9.1%} {row['kill_rate_without_equivalent']:10.1%}"
        rates += f" {row['kill_rate_without_exact_equivalent']:9.1%} {golden}"
        print(f"{name:10} {row['mutants']:7} {row['killed']:7} {row['survived']:8} {row['uncovered']:9} "
              f"{row['equivalent']:6} {rates}")  # fmt: skip
    print("\nsurvivors (file:line:column  mutation  |  the line as mutated):")
    for s in result["survivors"]:
        mark = " [equivalent]" if s["equivalent"] else " [no test runs it]" if s["status"] == "uncovered" else ""
        mark += " [golden test kills it]" if s["golden"] else ""
        print(f"  {s['file']}:{s['line']}:{s['col']}  {s['mutation']}{mark}  |  {s['mutated']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", help="files or folders to mutate (default: costs, scheduler, sim, router)")
    parser.add_argument("--mutants", type=int, default=300, help="how many mutants to sample (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at the same time")
    parser.add_argument("--timeout-factor", type=float, default=1.5, help="timeout = factor × tests' time + 20 s")
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds of tests per mutant at most (fastest first; coverage run's)"
    )
    parser.add_argument("--list", action="store_true", help="only count the mutants per package")
    parser.add_argument("--golden", action="store_true", help="also run the golden-plan tests on the survivors")
    parser.add_argument("--keep", action="store_true", help="keep the working copies (printed)")
    parser.add_argument("--minutes", type=float, default=math.inf,
                        help="stop starting mutants after this long (those tested: a uniform sub-sample)")  # fmt: skip
    parser.add_argument("--rerun", type=Path, metavar="REPORT", help="test only the survivors of this report.json")
    parser.add_argument("--tests", nargs="+", metavar="TEST", help="run every mutant against these tests only (quick)")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "mutation" / "report.json")
    args = parser.parse_args(argv)
    files = target_files(args.paths)
    every = [m for f in files for m in mutants(f, (ROOT / f).read_text(encoding="utf-8"))]
    if not args.minutes > 0:
        parser.error(f"--minutes must be a positive number of minutes, not {args.minutes}")
    if args.rerun:
        try:
            again = survivors_of(args.rerun)
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--rerun {args.rerun}: not a report.json written by mutate.py ({error!r})")
        every = [m for m in every if (m.path, m.lineno, m.col, m.description) in again]
    chosen = sample(every, args.mutants, args.seed)
    for name in PACKAGES:
        total = sum(package_of(m.path) == name for m in every)
        print(f"{name:10} {total:5} mutants, {sum(package_of(m.path) == name for m in chosen):5} sampled")
    if args.list:
        return 0
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="hexgen2-mutate-"))
    try:
        outcomes = run_all(chosen, args.jobs, work, args.timeout_factor, args.budget, args.golden, args.tests,
                           args.minutes, args.seed)  # fmt: skip
    finally:
        if args.keep:
            print(f"working copies kept in {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    result = report(outcomes, equivalents())
    print_report(result, args, time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"mutants": args.mutants, "seed": args.seed, "paths": args.paths, "jobs": args.jobs, "budget_s": args.budget}
    meta["golden"], meta["tests"] = args.golden, args.tests
    meta["minutes"] = args.minutes if math.isfinite(args.minutes) else None
    meta["tested"] = len(outcomes)
    meta["seconds"] = time.monotonic() - started
    args.output.write_text(json.dumps({**meta, **result}, indent=1, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
