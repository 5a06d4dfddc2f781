"""Read user YAML defensively and write plan files atomically.

Why: every user-facing file goes through here, so malformed YAML, binary junk, empty
files and alias bombs become one-paragraph `InputError`s naming the file, and pydantic
errors become "file: field.path: what was expected" instead of a traceback.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import InputError

MAX_FILE_BYTES = 64 * 2**20
MAX_NODES = 2_000_000  # expanded YAML nodes; an alias bomb blows past this long before memory does

Model = TypeVar("Model", bound=BaseModel)


class _SafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when built: 10× faster
    """Safe loading that refuses duplicate keys: YAML would silently keep the last `nodes:` of two."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key.value!r} (the first would be silently ignored)", key.start_mark
                    )
                seen.add(key.value)
        return super().construct_mapping(node, deep)


def _count_nodes(data: object, budget: int) -> int:
    """Count nodes as if aliases were expanded, stopping past `budget`.

    A shared subtree (an alias) counts each time it is referenced, but its size is computed
    once (memoised by identity), so a billion-laughs document is measured in microseconds.
    A self-referencing document counts as over budget.
    """
    if not isinstance(data, Mapping | list | tuple):
        return 1
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # containers on the current path: meeting one again means a cycle
    stack: list[tuple[object, bool]] = [(data, False)]
    while stack:
        item, children_done = stack.pop()
        children = [*item.keys(), *item.values()] if isinstance(item, Mapping) else item
        if children_done:
            total = 1 + sum(sizes.get(id(child), 1) for child in children)
            sizes[id(item)] = min(total, budget + 1)
            open_.discard(id(item))
            continue
        if id(item) in sizes:
            continue
        open_.add(id(item))
        stack.append((item, True))
        for child in children:
            if isinstance(child, Mapping | list | tuple):
                if id(child) in open_:
                    return budget + 1
                stack.append((child, False))
    return sizes.get(id(data), 1)


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
        data = yaml.load(text, Loader=_SafeLoader)
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


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside a field annotation (`X | None`, `list[X]`, `dict[str, X]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _field_names(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Keys allowed at `loc` (for "did you mean"): follow fields, skip list indexes, dict keys and union tags."""
    models = [model]
    for part in loc:
        fields = [m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields]
        if fields:
            models = [inner for f in fields for inner in _models_in(f.annotation)]
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def user_message(err: Mapping) -> str:
    """pydantic's message without its internals: a nested section that is not a mapping reads "Input should
    be a valid dictionary or instance of WorkloadSpec" in pydantic; users never see our class names."""
    if err["type"] == "model_type":  # the same words as for a plain dict field
        return "Input should be a valid dictionary"
    return str(err["msg"]).removeprefix("Value error, ")


def format_validation_error(path: Path, exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem: 'file: nodes[2].count: Input should be greater than 0 (got 0)'."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = user_message(err)
        got = err.get("input")
        quiet = isinstance(got, Mapping | list) or err["type"] in ("missing", "extra_forbidden")
        shown = "" if quiet else f" (got {got!r})"
        if err["type"] == "extra_forbidden" and model is not None:
            close = difflib.get_close_matches(str(err["loc"][-1]), _field_names(model, err["loc"][:-1]), n=1)
            shown = f" (did you mean {close[0]!r}?)" if close else ""
        lines.append(f"{path}: {loc or '(top level)'}: {msg}{shown}")
    return "\n".join(lines)


def validate(model: type[Model], data: object, path: Path, *, context: dict | None = None) -> Model:
    """Validate parsed YAML against a pydantic model, turning errors into InputError."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InputError(format_validation_error(path, exc, model)) from None


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write via a temporary file in the same directory and rename, so a failure never leaves half a file.
    Text is written as UTF-8; bytes (an image) as they are.

    Raises InputError when the path cannot be written (a directory, no permission, no space)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write here: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write here: {exc.strerror}.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _NoAliasDumper(yaml.SafeDumper):
    """Plans are read by people: repeated values are written out, never as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_yaml(data: object) -> str:
    """Deterministic YAML: sorted keys, block style, no aliases, fixed width."""
    return yaml.dump(
        data, Dumper=_NoAliasDumper, sort_keys=True, default_flow_style=False, width=100, allow_unicode=True
    )
