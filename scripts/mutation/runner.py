"""Running tests against mutants: private copies of the repository, a per-line map of which tests cover what,
and one pytest process per mutant with a timeout.

Why copies and processes: a mutant must be what every import sees, including subprocesses that tests start, and a
mutant that hangs or crashes the interpreter must not take the run with it. Each worker owns a copy; a mutant is
written into it and the original restored afterwards, the module's bytecode removed both times (so no stale .pyc
can stand for either; every other module, and pytest's rewritten tests, keep theirs). The process is forked from one
that has already imported pytest, numpy, scipy, networkx, pydantic and the rest (`preload`), which saves ~2 s of
start-up per mutant; it imports the repository's own modules afresh from its copy.

Why a coverage map: most mutants are killed by the few tests that execute their line. One coverage run (per-test
contexts, tests/plugin) says which tests those are; a mutant runs only them, cheapest files first, stopping at the
first failure. A line no test executes cannot be caught: its mutants survive without a run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mutation.operators import Mutant, at_import, uses

SELECTION = ("-m", "not ray", "-k", "not golden", "--ignore=tests/test_architecture.py")  # golden plans excluded
# The golden-plan tests (whole plans pinned byte for byte), run only on the survivors of SELECTION, for the rate
# "with golden tests" (mutate.py --golden).
GOLDEN = ("tests/test_solver.py::test_golden_plan", "tests/test_api.py::test_solve_writes_the_golden_plan")
GOLDEN_SELECTION = ("-m", "not ray")
PYTEST = ("-q", "-p", "no:cacheprovider", "-p", "no:anyio", "-p", "mutation.plugin", "--no-header", "-o", "addopts=")
# README, Makefile and docs too: some tests read them (the README's commands, the architecture page)
COPIED = (
    "planner", "launcher", "tests", "profiles", "examples", "scripts", "docs", "benchmarks",
    "pyproject.toml", "setup.cfg", "README.md", "Makefile",
)
KILLER_FILE = ".mutation-killer"


def environment(copy: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(copy), str(copy / "scripts")]),
        RAY_AUTH_MODE="disabled",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        **extra,
    )
    return env


def make_copy(root: Path, target: Path) -> Path:
    """A copy of the repository's code, tests and data, compiled once so that only a mutated module recompiles."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, target / name)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "planner", "launcher", "tests", "scripts"], cwd=target,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return target


@dataclass(frozen=True)
class CoverageMap:
    """Which tests execute each line of the mutated files, and how long each test takes."""

    lines: Mapping[str, Mapping[int, frozenset[str]]]  # relative path → line → contexts
    seconds: Mapping[str, float]  # test node id → seconds, for the tests that pass unmutated
    failed: tuple[str, ...]  # tests that fail in a copy without any mutation: never run

    def tests_for(self, mutant: Mutant, source: str, budget: float = math.inf) -> list[str]:
        """Node ids to run for this mutant, fastest first, within `budget` seconds; [] when no test executes it.

        A line that runs only at import time (a default, a class attribute, a module constant) selects the tests
        that run the code using it (`operators.uses`), or every test when none does."""
        if at_import(source, mutant.lineno):
            tests = self._covering(mutant.path, uses(source, mutant.lineno)) or set(self.seconds)
        else:
            tests = self._covering(mutant.path, range(mutant.lineno, mutant.end_lineno + 1))
        return self.ordered(tests, budget)

    def _covering(self, path: str, lines: Iterable[int]) -> set[str]:
        """The tests running any of these lines (setup-time coverage counts for the whole test file)."""
        by_line = self.lines.get(path, {})
        contexts = set().union(*(by_line.get(n, frozenset()) for n in lines))
        tests = {c for c in contexts if "::" in c}
        files = {c for c in contexts if c and "::" not in c}
        tests |= {t for t in self.seconds if t.split("::")[0] in files}
        return tests - set(self.failed)

    def ordered(self, tests: Iterable[str], budget: float = math.inf) -> list[str]:
        """Cheapest first (unit tests of the mutated code take milliseconds, and -x stops at the first failure), as
        many as fit in `budget` seconds of the coverage run's time (at least one). A test costs its own time plus,
        for the first test of its file, the file's set-up (`setup_of`): a module fixture that solves every example
        is paid by whichever test of the file runs first, however quick its own call."""
        chosen, spent, charged = [], 0.0, set()
        for test in sorted(tests, key=lambda t: (self._cost(t, set()), t)):
            cost = self._cost(test, charged)
            if chosen and spent + cost > budget:
                continue
            chosen.append(test)
            spent += cost
            charged.add(test.split("::")[0])
        return chosen

    def setup_of(self, file: str) -> float:
        """The most any one test of `file` took: an upper bound of its fixtures' one-time cost (the plugin adds a
        test's set-up to its own time, so the test that built a module fixture carries it)."""
        return self._setups.get(file, 0.0)

    @functools.cached_property
    def _setups(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for test, seconds in self.seconds.items():
            file = test.split("::")[0]
            found[file] = max(found.get(file, 0.0), seconds)
        return found

    def _cost(self, test: str, charged: set[str]) -> float:
        file = test.split("::")[0]
        return self.seconds.get(test, 0.0) + (0.0 if file in charged else self.setup_of(file))

    def seconds_of(self, tests: Sequence[str]) -> float:
        """What running `tests` in one process costs: their own times and each file's set-up once."""
        files = {t.split("::")[0] for t in tests}
        return sum(self.seconds.get(t, 0.0) for t in tests) + sum(self.setup_of(f) for f in files)


def coverage_map(copy: Path, paths: Sequence[str], work: Path, cache: Path | None = None) -> CoverageMap:
    """Run the selected tests once under coverage in `copy`; tests failing there are left out from then on (a test
    may depend on where the repository is); raise when none runs. With `cache` (a folder), a map made from the same
    code and tests is reused."""
    key = _fingerprint(copy, paths)
    cached = cache / f"coverage-{key}.json" if cache is not None else None
    if cached is not None and cached.exists():
        raw = json.loads(cached.read_text(encoding="utf-8"))
        lines = {f: {int(n): frozenset(c) for n, c in by.items()} for f, by in raw["lines"].items()}
        return CoverageMap(lines, raw["seconds"], tuple(raw["failed"]))
    found = _measure(copy, paths, work)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        lines = {f: {n: sorted(c) for n, c in by.items()} for f, by in found.lines.items()}
        raw = {"lines": lines, "seconds": dict(found.seconds), "failed": list(found.failed)}
        cached.write_text(json.dumps(raw), encoding="utf-8")
    return found


def _fingerprint(copy: Path, paths: Sequence[str]) -> str:
    """What the coverage map depends on: code, tests, this tool (but its operators), paths, selection."""
    digest = hashlib.sha256(repr((sorted(paths), SELECTION, PYTEST)).encode())
    code = [f for folder in ("planner", "launcher", "tests", "scripts/mutation") for f in (copy / folder).rglob("*.py")]
    for file in sorted(f for f in code if f.name != "operators.py"):
        digest.update(file.relative_to(copy).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def _measure(copy: Path, paths: Sequence[str], work: Path) -> CoverageMap:
    """One run of the selected tests under coverage, subprocesses included (mutation/startup/sitecustomize.py)."""
    data, durations, rc = work / "coverage.data", work / "durations.json", work / "coveragerc"
    sources = ", ".join(sorted({str(copy / Path(p).parts[0]) for p in paths}))
    rc.write_text(f"[run]\nparallel = True\ndata_file = {data}\nsource = {sources}\n", encoding="utf-8")
    env = environment(copy, HEXGEN2_MUTATION_DURATIONS=str(durations), COVERAGE_PROCESS_START=str(rc))
    env["PYTHONPATH"] += os.pathsep + str(copy / "scripts" / "mutation" / "startup")
    argv = [sys.executable, "-m", "pytest", *PYTEST, *SELECTION, "tests"]  # measured from start-up, as subprocesses
    done = subprocess.run(argv, cwd=copy, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not durations.exists():
        raise RuntimeError(f"the tests do not run without any mutation:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    subprocess.run([sys.executable, "-m", "coverage", "combine", f"--rcfile={rc}", "-q"], cwd=copy, env=env, check=True)
    import coverage

    covered = coverage.CoverageData(basename=str(data))
    covered.read()
    lines: dict[str, dict[int, frozenset[str]]] = {}
    for measured in covered.measured_files():
        relative = Path(measured).resolve().relative_to(copy.resolve()).as_posix()
        if relative in paths:
            found = covered.contexts_by_lineno(measured)
            lines[relative] = {line: frozenset(contexts) for line, contexts in found.items()}
    ran = json.loads(durations.read_text(encoding="utf-8"))
    failed = tuple(ran["failed"])
    return CoverageMap(lines, {t: s for t, s in ran["seconds"].items() if "::" in t and t not in failed}, failed)


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # killed | timeout | survived | uncovered | error
    seconds: float
    tests: int  # how many tests were selected (0: none covers the mutant)
    killer: str = ""  # the first test that failed
    golden: bool = False  # survived the selection but a golden-plan test fails on it (mutate.py --golden)


@dataclass(frozen=True)
class Job:
    mutant: Mutant
    tests: list[str]  # node ids to run
    timeout: float
    selection: tuple[str, ...] = SELECTION


@dataclass
class _Running:
    job: Job
    copy: Path
    original: str
    started: float
    timed_out: bool = False


def preload() -> None:
    """Import the heavy third-party packages once, before forking, so that each mutant's process starts warm.
    Nothing of the repository is imported here: each mutant's process imports it from its copy."""
    import aiohttp  # noqa: F401
    import hypothesis  # noqa: F401
    import networkx  # noqa: F401
    import numpy  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic  # noqa: F401
    import pytest  # noqa: F401
    import rich.console  # noqa: F401
    import scipy.linalg
    import scipy.sparse.csgraph  # noqa: F401
    import typer  # noqa: F401
    import yaml  # noqa: F401


def run_jobs(
    jobs: Sequence[Job], copies: Sequence[Path], done: Callable[[Outcome], None], stop_at: float = math.inf
) -> list[Outcome]:
    """Test every job's mutant, one forked pytest process per mutant and copy (at most len(copies) at a time);
    after `stop_at` (time.monotonic()) no new one starts, and the jobs not started are left out.

    Single-threaded on purpose: the parent only forks, polls and kills, so no lock can be held across a fork."""
    pending, free = deque(jobs), list(copies)
    running: dict[int, _Running] = {}
    outcomes: list[Outcome] = []

    def finish(outcome: Outcome) -> None:
        outcomes.append(outcome)
        done(outcome)

    while pending or running:
        if time.monotonic() > stop_at:
            pending.clear()
        while pending and free:
            job = pending.popleft()
            if job.tests == []:
                finish(Outcome(job.mutant, "uncovered", 0.0, 0))
                continue
            copy = free.pop()
            pid, original = _start(copy, job)
            running[pid] = _Running(job, copy, original, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG) if running else (0, 0)
        if pid in running:
            state = running.pop(pid)
            finish(_end(pid, state, os.waitstatus_to_exitcode(status)))
            free.append(state.copy)
            continue
        now = time.monotonic()
        for pid, state in running.items():
            if not state.timed_out and now - state.started > state.job.timeout:
                state.timed_out = True
                _kill_group(pid)
        time.sleep(0.02)
    return outcomes


def _start(copy: Path, job: Job) -> tuple[int, str]:
    target = copy / job.mutant.path
    original = target.read_text(encoding="utf-8")
    target.write_text(job.mutant.apply(original), encoding="utf-8")
    _drop_bytecode(target)
    args = ["-x", *PYTEST, *job.selection, *job.tests]
    sys.stdout.flush()
    sys.stderr.flush()
    (copy / KILLER_FILE).unlink(missing_ok=True)
    pid = os.fork()
    if pid == 0:
        _child(copy, args)
    return pid, original


def _child(copy: Path, args: list[str]) -> None:
    """In the forked process: become a process group, look at the copy, run pytest silently, exit with its code."""
    code = 70
    try:
        os.setsid()
        os.chdir(copy)
        os.environ.update(environment(copy, HEXGEN2_MUTATION_KILLER=str(copy / KILLER_FILE)))
        sys.path[:0] = [str(copy), str(copy / "scripts")]
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        import pytest

        code = int(pytest.main(args))
    finally:
        os._exit(code)


def _end(pid: int, state: _Running, code: int) -> Outcome:
    """Restore the copy and classify: 0 all passed; 1 a test failed; 2 interrupted (a collection error: the mutant
    breaks an import); 3 pytest's internal error; killed by us: the timeout; anything else is the tool's error."""
    _kill_group(pid)  # whatever the tests started and left behind
    target = state.copy / state.job.mutant.path
    target.write_text(state.original, encoding="utf-8")
    _drop_bytecode(target)
    status = "timeout" if state.timed_out else {0: "survived", 1: "killed", 2: "killed", 3: "killed"}.get(code, "error")
    tests = len(state.job.tests)
    killer = state.copy / KILLER_FILE
    name = killer.read_text(encoding="utf-8") if killer.exists() else ""
    return Outcome(state.job.mutant, status, time.monotonic() - state.started, tests, name)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _drop_bytecode(module: Path) -> None:
    for cached in (module.parent / "__pycache__").glob(f"{module.stem}.*.pyc"):
        cached.unlink()
