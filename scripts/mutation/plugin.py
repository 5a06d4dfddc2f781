"""pytest plugin for mutation runs (`-p mutation.plugin`).

Always: Hypothesis runs derandomized, without its example database and without deadlines, so whether a mutant is
killed depends on the mutant alone (not on examples an earlier mutant left behind, nor on machine load).
With HEXGEN2_MUTATION_DURATIONS set (the coverage run): each test's call phase is its own coverage context (its node
id), setup and teardown are attributed to the test's file (module and session fixtures serve the whole file), and the
seconds every test took, and which failed, are written as JSON to that path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

DURATIONS = "HEXGEN2_MUTATION_DURATIONS"
KILLER = "HEXGEN2_MUTATION_KILLER"  # a mutant's run: the first failing test is written to this path
_seconds: dict[str, float] = {}
_failed: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    from hypothesis import settings

    settings.register_profile("mutation", database=None, derandomize=True, deadline=None, print_blob=False)
    settings.load_profile("mutation")


def _switch(context: str) -> None:
    """The coverage context from now on, here and in the processes a test starts (mutation/startup)."""
    if os.environ.get(DURATIONS):
        import coverage

        os.environ["HEXGEN2_MUTATION_CONTEXT"] = context
        current = coverage.Coverage.current()
        if current is not None:
            current.switch_context(context)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    _switch(item.nodeid.split("::")[0])
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _switch(item.nodeid)
    yield
    _switch(item.nodeid.split("::")[0])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    yield
    _switch("")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _seconds[report.nodeid] = _seconds.get(report.nodeid, 0.0) + report.duration
    if report.failed and report.nodeid not in _failed:
        _failed.append(report.nodeid)
        if (path := os.environ.get(KILLER)) and len(_failed) == 1:
            Path(path).write_text(report.nodeid, encoding="utf-8")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if path := os.environ.get(DURATIONS):
        Path(path).write_text(json.dumps({"seconds": _seconds, "failed": _failed}, indent=0), encoding="utf-8")
