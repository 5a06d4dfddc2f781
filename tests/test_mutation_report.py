"""scripts/mutate.py's bookkeeping: the three kill rates it prints (raw, without equivalents, without the exact
equivalents only) and the equivalence lists, every entry of which must still name a mutant of today's code (an
entry whose line changed silently stops excusing anything, and a wrong one would excuse a real survivor)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("mutate_script", ROOT / "scripts" / "mutate.py")
assert SPEC is not None and SPEC.loader is not None
MUTATE = sys.modules.setdefault(SPEC.name, importlib.util.module_from_spec(SPEC))
SPEC.loader.exec_module(MUTATE)
OPERATORS = sys.modules["mutation.operators"]  # the copy mutate.py imported: its Mutant is the one report() reads
RUNNER = sys.modules["mutation.runner"]


def source_of(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8")


def test_every_listed_equivalent_names_a_mutant_of_the_current_code() -> None:
    known = MUTATE.equivalents()
    assert known, "the equivalence lists are empty or unread"
    files = sorted({path for path, *_ in known})
    present = set()
    for path in files:
        source = source_of(path).splitlines()
        for m in OPERATORS.mutants(path, source_of(path)):
            present.add((path, source[m.lineno - 1].strip(), m.description, m.col))
    anywhere = {p[:3] for p in present}  # an entry without a column excuses the mutation at any column of its line
    stale = [k for k in known if (k not in present if k[3] is not None else k[:3] not in anywhere)]
    assert stale == []


def test_rates_count_exact_and_numerical_equivalents_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    path = "planner/scheduler/roles.py"
    three = OPERATORS.mutants(path, source_of(path))[:3]
    lines = [source_of(path).splitlines()[m.lineno - 1].strip() for m in three]
    known = {
        (path, lines[1], three[1].description, three[1].col): MUTATE.Equivalent("no input tells them apart"),
        (path, lines[2], three[2].description, three[2].col): MUTATE.Equivalent("the optimiser's unit", True),
    }
    outcomes = [
        RUNNER.Outcome(three[0], "killed", 0.1, 1, "tests/x.py::t"),
        RUNNER.Outcome(three[1], "survived", 0.1, 1),
        RUNNER.Outcome(three[2], "survived", 0.1, 1),
    ]
    row = MUTATE.report(outcomes, known)["packages"]["scheduler"]
    assert (row["mutants"], row["killed"], row["survived"], row["equivalent"], row["numerical"]) == (3, 1, 2, 2, 1)
    assert row["kill_rate"] == pytest.approx(1 / 3)
    assert row["kill_rate_without_equivalent"] == pytest.approx(1.0)  # both survivors excused
    assert row["kill_rate_without_exact_equivalent"] == pytest.approx(1 / 2)  # the numerical one counts again


def test_a_numerical_entry_is_read_with_its_mark(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.yaml").write_text(
        "- {file: a.py, line: ' x = 1 ', mutation: '1 → 2', numerical: true, reason: units}\n"
        "- {file: a.py, line: 'y = 2', mutation: '2 → 3', col: 4, reason: dead}\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(MUTATE, "EQUIVALENT", tmp_path)
    assert MUTATE.equivalents() == {
        ("a.py", "x = 1", "1 → 2", None): MUTATE.Equivalent("units", numerical=True),
        ("a.py", "y = 2", "2 → 3", 4): MUTATE.Equivalent("dead", numerical=False),
    }


def test_past_its_time_the_runner_starts_no_mutant(tmp_path) -> None:
    # --minutes: once stop_at has passed nothing new is forked, and what was not started is left out
    path = "planner/scheduler/roles.py"
    job = RUNNER.Job(OPERATORS.mutants(path, source_of(path))[0], ["tests/test_roles.py"], 60.0)
    seen: list = []
    assert RUNNER.run_jobs([job, job], [tmp_path], seen.append, stop_at=0.0) == [] == seen


def test_a_files_set_up_is_charged_to_the_first_test_taken_from_it() -> None:
    # the plugin adds a module fixture's set-up to the test that built it (a.py::slow); a quick sibling still pays it
    seconds = {"tests/a.py::quick": 0.001, "tests/a.py::slow": 100.0, "tests/b.py::one": 1.0, "tests/b.py::two": 2.0}
    covered = RUNNER.CoverageMap({}, seconds, ())
    assert covered.ordered(["tests/a.py::quick", "tests/b.py::one", "tests/b.py::two"], budget=60.0) == [
        "tests/b.py::one",  # 1 + b's set-up bound 2
        "tests/b.py::two",  # 2 more: 5 in all; a.py::quick would cost 100.001
    ]
    assert covered.ordered(["tests/a.py::quick"], budget=60.0) == ["tests/a.py::quick"]  # at least one
    assert covered.seconds_of(["tests/a.py::quick"]) == pytest.approx(100.001)  # its timeout covers the set-up
    assert covered.seconds_of(["tests/b.py::one", "tests/b.py::two"]) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minutes", "0"], "--minutes must be a positive number of minutes, not 0.0"),
        (["--rerun", "{tmp}/missing.json"], "not a report.json written by mutate.py (FileNotFoundError"),
        (["--rerun", "{tmp}/other.json"], "not a report.json written by mutate.py (KeyError('survivors'))"),
    ],
)
def test_bad_options_are_refused_with_exit_2(argv, message, tmp_path, capsys) -> None:
    (tmp_path / "other.json").write_text('{"x": 1}', encoding="utf-8")
    with pytest.raises(SystemExit) as stopped:
        MUTATE.main([a.format(tmp=tmp_path) for a in argv] + ["--list"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err
