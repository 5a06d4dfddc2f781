"""Run fuzz cases in worker processes with a time limit, classify each outcome, write reproducers.

Why worker processes: a hang (a FIFO opened for reading, a clock that ticks through 10^12 idle
seconds) must be *reported*, not hang the run, and a memory bomb must fail in the worker (its
address space is capped), not take the machine down. Workers are forked once and reused, so an
input costs what the command costs; a hung worker's stack is dumped (faulthandler) and it is
replaced.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import multiprocessing
import os
import re
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .cases import SENTINEL, Case
from .corpus import ROOT, Corpus
from .invoke import Outcome, invoke

CATEGORIES = ("crash", "hang", "wrong exit", "overwritten", "unnamed")
MEMORY_CAP = 4 * 2**30
FRAME = re.compile(r'File "([^"]*/(?:planner|launcher)/[^"]+)", line (\d+),? in (\S+)')
ANY_FRAME = re.compile(r'File "([^"]+)", line (\d+),? in (\S+)')


def _worker(conn: Connection, dump_path: str) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))
    dump = open(dump_path, "w")  # noqa: SIM115  lives as long as the worker
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=False)
    os.chdir(ROOT)
    while True:
        task = conn.recv()
        if task is None:
            return
        conn.send(invoke(*task))


class Worker:
    def __init__(self, scratch: Path, number: int) -> None:
        self.dump = scratch / f"worker-{number}.stack"
        self.conn, child = multiprocessing.get_context("fork").Pipe()
        self.process = multiprocessing.get_context("fork").Process(
            target=_worker, args=(child, str(self.dump)), daemon=True
        )
        self.process.start()
        self.case: tuple[Case, Path, list[str]] | None = None
        self.started = self.cpu_started = 0.0

    def submit(self, case: Case, directory: Path, argv: list[str]) -> None:
        self.case, self.started, self.cpu_started = (case, directory, argv), time.monotonic(), self.cpu_seconds()
        self.conn.send((case.program, argv))

    def cpu_seconds(self) -> float:
        """The worker's user + system CPU time (Linux /proc), 0 when it cannot be read."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def hung(self, timeout: float) -> bool:
        """More than `timeout` s of CPU; or `timeout` s of wall clock with almost no CPU (blocked, e.g. on a
        FIFO); or 6 × `timeout` s of wall clock in any case.

        CPU time, because on a shared 2-core machine a 4-second run can take 20 s of wall clock."""
        wall = time.monotonic() - self.started
        if wall < timeout:
            return False
        cpu = self.cpu_seconds() - self.cpu_started
        return cpu >= timeout or cpu < 0.02 * wall or wall >= 6 * timeout

    def stack_and_kill(self) -> str:
        """The hung worker's Python stack (faulthandler), then SIGKILL."""
        try:
            os.kill(self.process.pid, signal.SIGUSR1)
            time.sleep(0.3)
            stack = self.dump.read_text(errors="replace")
        except OSError:
            stack = ""
        self.process.kill()
        self.process.join()
        return stack

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


@dataclass
class Failure:
    category: str
    signature: str
    case: Case
    detail: str


@dataclass
class Report:
    inputs: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    by_target: dict[str, int] = field(default_factory=dict)

    def count(self, category: str) -> int:
        return sum(f.category == category for f in self.failures)

    def signatures(self) -> dict[tuple[str, str], list[Failure]]:
        groups: dict[tuple[str, str], list[Failure]] = {}
        for failure in self.failures:
            groups.setdefault((failure.category, failure.signature), []).append(failure)
        return groups


def _frame(text: str, innermost_first: bool = False) -> str:
    """The innermost planner/launcher frame of a traceback (or of a faulthandler dump, innermost first)."""
    frames = FRAME.findall(text) or ANY_FRAME.findall(text)
    if not frames:
        return "unknown frame"
    path, line, function = frames[0] if innermost_first else frames[-1]
    return f"{path.split(str(ROOT) + '/')[-1].split('/lib/python3.11/')[-1]}:{line} {function}"


def _crash_signature(text: str) -> str:
    last = [line for line in text.strip().splitlines() if line and not line.startswith(" ")]
    kind = last[-1].split(":")[0] if last else "?"
    return f"{kind} at {_frame(text)}"


def classify(case: Case, directory: Path, outcome: Outcome | None, stack: str = "") -> list[Failure]:
    """Every rule the outcome breaks (a crash or hang stops the other checks)."""
    if outcome is None:
        return [Failure("hang", f"hang in {_frame(stack, innermost_first=True)}", case, stack[-4000:])]
    text = outcome.stdout + outcome.stderr + outcome.error
    if outcome.error or "Traceback (most recent call last)" in text or outcome.code not in (0, 1, 2):
        detail = outcome.error or text
        return [Failure("crash", _crash_signature(detail) if detail else f"exit {outcome.code}", case, detail[-6000:])]
    failures = []
    command = case.argv[0] if case.program == "hexplan" else "hexlaunch"
    if (case.expect_bad and outcome.code != 2) or (outcome.code == 1 and not case.exit1_ok):
        expected = "2" if case.expect_bad else "0 or 2"
        failures.append(Failure("wrong exit", f"{command}: exit {outcome.code}, expected {expected}", case, text))
    if case.output and outcome.code != 0:
        target = directory / case.output
        if not target.is_file() or target.read_bytes() != SENTINEL:
            failures.append(Failure("overwritten", f"{command} -o replaced on exit {outcome.code}", case, text))
    named = any(c in outcome.stderr for c in case.culprits) and "error" in outcome.stderr.lower()
    if outcome.code == 2 and case.culprits and not named:
        wanted = " or ".join(case.culprits)
        failures.append(Failure("unnamed", f"{command}: exit 2 without naming {wanted} on stderr", case, text))
    return failures


def write_reproducer(out: Path, number: int, failure: Failure, seed: int, directory: Path, argv: list[str]) -> Path:
    """out/<category>-<n>/: the case's regular files, the command (run from the repo root), and what happened."""
    target = out / f"{failure.category.replace(' ', '-')}-{number}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    case = failure.case
    for name, content in case.files.items():
        if isinstance(content, bytes):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(content)
    command = [case.program, *(a.replace(str(directory), str(target)) for a in argv)]
    specials = {name: kind for name, kind in case.files.items() if isinstance(kind, str)}
    info = {
        "category": failure.category,
        "signature": failure.signature,
        "rerun": f".venv/bin/python -m tests.fuzz --seed {seed} --only {case.index}",
        "command": command,
        "special_files": specials,  # recreated by --only (FIFOs, devices, sparse files are not copied)
        "mutations": case.notes,
        "detail": failure.detail[-8000:],
    }
    (target / "case.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return target


def run(
    corpus: Corpus,
    build: Callable[[int], Case],
    indexes: list[int],
    *,
    timeout: float = 10.0,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    on_failure: Callable[[Failure, Path, list[str]], None] | None = None,
) -> Report:
    """Run the cases `build(i)` for each index; return counts and failures."""
    report = Report()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hexgen2-fuzz-") as tmp:
        scratch = Path(tmp)
        workers = [Worker(scratch, n) for n in range(jobs)]
        pending = list(reversed(indexes))
        try:
            while pending or any(w.case for w in workers):
                for n, worker in enumerate(workers):
                    if worker.case is None and pending:
                        if not worker.process.is_alive():
                            workers[n] = worker = Worker(scratch, n)
                        case = build(pending.pop())
                        directory = scratch / f"case-{case.index}"
                        worker.submit(case, directory, case.materialise(directory))
                busy = [w for w in workers if w.case]
                wait([w.conn for w in busy], timeout=0.5)
                for n, worker in enumerate(workers):
                    if worker.case is None:
                        continue
                    case, directory, argv = worker.case
                    if worker.conn.poll():
                        try:
                            outcome: Outcome | None = worker.conn.recv()
                            stack = ""
                        except (EOFError, OSError):
                            outcome, stack = Outcome(-9, "", "", "worker died (killed: memory or a signal)"), ""
                    elif worker.hung(timeout):
                        outcome, stack = None, worker.stack_and_kill()
                    elif not worker.process.is_alive():
                        outcome, stack = Outcome(-9, "", "", "worker died (killed: memory or a signal)"), ""
                    else:
                        continue
                    failures = classify(case, directory, outcome, stack)
                    report.inputs += 1
                    report.by_target[case.notes[0]] = report.by_target.get(case.notes[0], 0) + 1
                    for failure in failures:
                        report.failures.append(failure)
                        if on_failure:
                            on_failure(failure, directory, argv)
                    worker.case = None
                    if outcome is None or outcome.code == -9:
                        workers[n] = Worker(scratch, n)
                    shutil.rmtree(directory, ignore_errors=True)
                    if progress:
                        progress(report.inputs)
        finally:
            for worker in workers:
                worker.close()
    report.seconds = time.monotonic() - began
    return report
