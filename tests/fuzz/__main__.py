"""`make fuzz`: run N fuzz cases through hexplan and hexlaunch and print what broke.

    .venv/bin/python -m tests.fuzz [--inputs 10000] [--seed 0] [--jobs 1] [--timeout 10] [--out out/fuzz]
    .venv/bin/python -m tests.fuzz --seed S --only I        # re-run one case (from a reproducer's case.json)

Prints inputs, crashes (a traceback or an exit status other than 0/1/2), hangs (more than --timeout s
of CPU, or as long blocked), wrong exit codes (bad input not exiting 2; exit 1 outside diff/check),
overwritten outputs (a -o file changed by a failed command) and unnamed messages (exit 2 whose stderr
does not name the bad file or option), then each distinct signature with a reproducer directory
under --out.
Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import corpus as corpus_module
from .runner import CATEGORIES, Failure, Report, run, write_reproducer
from .targets import build_case

COLUMNS = {
    "crash": "crashes",
    "hang": "hangs",
    "wrong exit": "wrong exit codes",
    "overwritten": "overwritten outputs",
    "unnamed": "unnamed messages",
}


def summary_table(report: Report, title: str) -> Table:
    table = Table(title=title)
    for column in ("inputs", *COLUMNS.values(), "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.inputs), *(str(report.count(c)) for c in CATEGORIES), f"{report.seconds:.0f}"
    )  # fmt: skip
    return table


def signature_table(report: Report, reproducers: dict[tuple[str, str], Path]) -> Table:
    table = Table(title="distinct failures")
    for column in ("category", "signature", "count", "first case", "reproducer"):
        table.add_column(column)
    for key, failures in sorted(report.signatures().items(), key=lambda kv: (kv[0][0], -len(kv[1]))):
        where = reproducers.get(key)
        table.add_row(key[0], key[1], str(len(failures)), str(failures[0].case.index), str(where or ""))
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="CPU seconds (or wall seconds blocked) before an input is a hang"
    )
    parser.add_argument("--out", type=Path, default=Path("out/fuzz"))
    parser.add_argument("--only", type=int, help="run just this case index")
    args = parser.parse_args(argv)
    console = Console(width=200)
    args.out.mkdir(parents=True, exist_ok=True)
    corpus = corpus_module.build(args.out / "corpus")
    reproducers: dict[tuple[str, str], Path] = {}

    def keep(failure: Failure, directory: Path, case_argv: list[str]) -> None:
        key = (failure.category, failure.signature)
        if key not in reproducers:
            reproducers[key] = write_reproducer(args.out, len(reproducers), failure, args.seed, directory, case_argv)

    indexes = [args.only] if args.only is not None else list(range(args.inputs))
    step = max(1, len(indexes) // 20)

    def progress(done: int) -> None:
        if done % step == 0:
            print(f"fuzz: {done}/{len(indexes)} inputs", file=sys.stderr, flush=True)

    report = run(
        corpus,
        lambda i: build_case(corpus, args.seed, i),
        indexes,
        timeout=args.timeout,
        jobs=args.jobs,
        progress=progress,
        on_failure=keep,
    )
    console.print(summary_table(report, f"hexgen2 fuzz: seed {args.seed}, timeout {args.timeout:g} s"))
    console.print("inputs per target: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_target.items())))
    if report.failures:
        console.print(signature_table(report, reproducers))
    if args.only is not None:
        for failure in report.failures:
            console.print(failure.detail[-3000:])
    summary = {c: report.count(c) for c in CATEGORIES} | {"inputs": report.inputs, "seconds": round(report.seconds)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
