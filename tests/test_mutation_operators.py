"""scripts/mutation/operators.py, the mutator behind `make mutate`: which mutants a small module gets, that each
is one well-placed edit that compiles, and what is left alone (docstrings, annotations, asserts)."""

from __future__ import annotations

import ast
import importlib.util
import sys

from conftest import ROOT

SPEC = importlib.util.spec_from_file_location("mutation_operators", ROOT / "scripts" / "mutation" / "operators.py")
assert SPEC is not None and SPEC.loader is not None
OPERATORS = sys.modules.setdefault(SPEC.name, importlib.util.module_from_spec(SPEC))  # dataclasses look it up there
SPEC.loader.exec_module(OPERATORS)

SOURCE = '''"""A module docstring."""

from __future__ import annotations

LIMIT: int = 3
NAMES = {"a": "→"}


def f(a: int, b: float = 0.5) -> bool:
    """A docstring."""
    total = a + 1
    total = total * 2
    if a < b and not b:
        return min(a, b) > 0
    assert a > 1, "never mutated"
    for x in range(a):
        if x == 2:
            continue
    return True
'''


def by_description() -> dict[str, list]:
    found: dict[str, list] = {}
    for mutant in OPERATORS.mutants("m.py", SOURCE):
        found.setdefault(mutant.description, []).append(mutant)
    return found


def test_each_operator_applies_where_it_should() -> None:
    found = by_description()
    expected = {
        "3 → 4", "3 → 2", "0.5 → 1.0", "0.5 → 0.25", "+ → -", "* → /", "1 → 2", "1 → 0", "2 → 3", "2 → 1",
        "< → <=", "< → >=", "> → >=", "> → <=", "== → !=", "and → or", "drop not", "min → max", "drop assignment",
        "if condition → True", "if condition → False", "return → return None", "True → False", "drop continue",
        "0 → 1", "0 → -1",
    }  # fmt: skip
    assert set(found) == expected
    assert len(found["drop assignment"]) == 1 and found["drop assignment"][0].lineno == 12, "only the re-assignment"
    assert {m.lineno for m in found["1 → 2"]} == {11}, "the assert's constant is left alone"


def test_a_mutant_replaces_exactly_its_span_and_compiles() -> None:
    for mutants in by_description().values():
        for mutant in mutants:
            text = mutant.apply(SOURCE)
            assert text != SOURCE
            compile(text, "m.py", "exec")
            before, after = SOURCE.splitlines(), text.splitlines()
            assert before[: mutant.lineno - 1] == after[: mutant.lineno - 1], "lines before the edit are untouched"
    (lt,) = by_description()["< → <="]
    assert lt.apply(SOURCE).splitlines()[12] == "    if (a <= b) and not b:"
    (dropped,) = by_description()["drop continue"]
    assert dropped.apply(SOURCE).splitlines()[17] == "            pass"


def test_docstrings_annotations_and_asserts_are_left_alone() -> None:
    for mutant in OPERATORS.mutants("m.py", SOURCE):
        line = SOURCE.splitlines()[mutant.lineno - 1]
        assert '"""' not in line and "assert" not in line
        assert not (mutant.lineno == 9 and mutant.col < line.index("=")), "an annotation was mutated"


def test_columns_count_characters_after_non_ascii_text() -> None:
    source = 'x = {"→": 1} if 2 > 1 else None\n'
    for mutant in OPERATORS.mutants("m.py", source):
        ast.parse(mutant.apply(source))
    (gt,) = [m for m in OPERATORS.mutants("m.py", source) if m.description == "> → >="]
    assert gt.apply(source) == 'x = {"→": 1} if (2 >= 1) else None\n'


def test_enumeration_is_deterministic_and_sorted() -> None:
    first, again = OPERATORS.mutants("m.py", SOURCE), OPERATORS.mutants("m.py", SOURCE)
    assert first == again == sorted(first)
    assert len({m.key for m in first}) == len(first)


def test_import_time_lines_and_their_uses() -> None:
    """Module constants, defaults and class attributes run at import; the tests to run for them are those running
    the lines that use them."""
    lines = SOURCE.splitlines()
    assert OPERATORS.at_import(SOURCE, 5) and OPERATORS.at_import(SOURCE, 9), "a constant, a def line (defaults)"
    assert not OPERATORS.at_import(SOURCE, 11) and not OPERATORS.at_import(SOURCE, 18)
    assert OPERATORS.uses(SOURCE, 9) == set(range(10, len(lines) + 1)), "a default: the function's body"
    assert OPERATORS.uses("A = 1\n\ndef f():\n    return A + 1\n", 1) == {4}
    assert OPERATORS.uses("class C:\n    x = 1\n\n    def f(self):\n        return self.x\n", 2) == {2, 3, 4, 5}
