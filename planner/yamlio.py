"""Read user YAML defensively and write plan files atomically.

Why: every user-facing file goes through here, so malformed YAML, binary junk, empty
files and alias bombs become one-paragraph `InputError`s naming the file, and pydantic
errors become "file: field.path: what was expected" instead of a traceback.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import InputError

MAX_FILE_BYTES = 64 * 2**20
MAX_NODES = 2_000_000  # expanded YAML nodes; an alias bomb blows past this long before memory does

Model = TypeVar("Model", bound=BaseModel)


def _count_nodes(data: object, budget: int) -> int:
    """Count nodes as if aliases were expanded, stopping at `budget` (a shared subtree counts each time)."""
    stack, seen = [data], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return seen
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return seen


def read_text(path: Path, *, what: str) -> str:
    """Read a UTF-8 text file or raise InputError saying why not."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path}: the {what} is {size} bytes; at most {MAX_FILE_BYTES} are read.")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (expected a {what}).", hint="check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what} file.") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror}.") from None
    if b"\x00" in raw:
        raise InputError(f"{path}: is binary data, not a {what} (found a NUL byte).")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: is not UTF-8 text (byte {exc.start}); expected a {what}.") from None


def load_yaml(path: Path, *, what: str = "YAML file") -> object:
    """Parse one YAML document safely; reject empty documents and alias bombs."""
    text = read_text(path, what=what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: malformed YAML{where}: {problem}.") from None
    if data is None:
        raise InputError(f"{path}: the {what} is empty.", hint="see the README for the file format")
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise InputError(
            f"{path}: the YAML expands to more than {MAX_NODES:,} values (an alias bomb?); refusing to read it."
        )
    return data


def format_validation_error(path: Path, exc: ValidationError) -> str:
    """One line per problem: 'file: nodes[2].count: Input should be greater than 0 (got 0)'."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        shown = "" if isinstance(got, Mapping | list) or err["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{path}: {loc or '(top level)'}: {msg}{shown}")
    return "\n".join(lines)


def validate(model: type[Model], data: object, path: Path, *, context: dict | None = None) -> Model:
    """Validate parsed YAML against a pydantic model, turning errors into InputError."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InputError(format_validation_error(path, exc)) from None


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _NoAliasDumper(yaml.SafeDumper):
    """Plans are read by people: repeated values are written out, never as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_yaml(data: object) -> str:
    """Deterministic YAML: sorted keys, block style, no aliases, fixed width."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=True, default_flow_style=False, width=100, allow_unicode=True)
