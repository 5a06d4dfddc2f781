"""Read user YAML defensively and write plan files atomically.

Why: every user-facing file goes through here, so malformed YAML, binary junk, empty
files and alias bombs become one-paragraph `InputError`s naming the file, and pydantic
errors become "file: field.path: what was expected" instead of a traceback.
"""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from planner.errors import InputError, shown

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


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file" if not stat.S_ISREG(mode) else None)


def _read_at_most(handle: BinaryIO, cap: int, *, first: int) -> bytes:
    """Up to `cap` bytes; buffers grow with what is there (read(cap) would allocate all of `cap` at once)."""
    chunks, total, want = [], 0, min(first, cap)
    while total < cap:
        chunk = handle.read(min(want, cap - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        want = 2**20
    return b"".join(chunks)


def read_bytes(path: Path, *, what: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or an InputError naming it.

    Why stat before open: opening a FIFO for reading blocks until a writer appears, and
    /dev/zero never ends, so only regular files are opened (non-blocking, re-checked on the open
    descriptor in case the path changed in between), and never more than `limit` bytes are read,
    whatever st_size claims (/proc files report 0).
    """
    try:
        mode, size = (info := os.stat(path)).st_mode, info.st_size
        kind = _not_regular(mode)
        if kind is not None:
            raise InputError(f"{path}: is {kind}, not a regular file; expected a {what}.")
        if size > limit:
            raise InputError(f"{path}: the {what} is {size:,} bytes; at most {limit:,} bytes are read.")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            kind = _not_regular(os.fstat(handle.fileno()).st_mode)
            if kind is not None:
                raise InputError(f"{path}: is {kind}, not a regular file; expected a {what}.")
            raw = _read_at_most(handle, limit + 1, first=size + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: no such file (expected a {what}).", hint="check the path") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror}.") from None
    except ValueError:  # an embedded NUL byte
        raise InputError(f"{str(path)!r}: not a usable path (it contains a NUL byte); expected a {what}.") from None
    if len(raw) > limit:
        raise InputError(f"{path}: the {what} is over {limit:,} bytes; at most {limit:,} bytes are read.")
    return raw


def read_text(path: Path, *, what: str) -> str:
    """Read a UTF-8 text file (through `read_bytes`) or raise InputError saying why not."""
    raw = read_bytes(path, what=what)
    if b"\x00" in raw:
        raise InputError(f"{path}: is binary data, not a {what} (found a NUL byte).")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: is not UTF-8 text (byte {exc.start}); expected a {what}.") from None


def is_directory(path: Path) -> bool:
    """Path.is_dir() that never raises (a name too long or with a NUL byte is simply not a directory)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def exists(path: Path) -> bool:
    """Path.exists() that never raises (see is_directory)."""
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def parse_yaml(text: str, path: Path, *, what: str = "YAML file") -> object:
    """Parse one YAML document safely; reject empty documents and alias bombs."""
    try:
        data = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: malformed YAML{where}: {problem}.") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tag the value cannot take: `!!float abc`
        raise InputError(f"{path}: malformed YAML: a tagged value cannot be read ({shown(str(exc), 120)}).") from None
    if data is None:
        raise InputError(f"{path}: the {what} is empty.", hint="see the README for the file format")
    if _count_nodes(data, MAX_NODES) > MAX_NODES:
        raise InputError(
            f"{path}: the YAML expands to more than {MAX_NODES:,} values (an alias bomb?); refusing to read it."
        )
    return data


def load_yaml(path: Path, *, what: str = "YAML file") -> object:
    """Read (`read_text`) and parse (`parse_yaml`) one YAML document."""
    return parse_yaml(read_text(path, what=what), path, what=what)


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
            name = str(part) if len(str(part)) <= 60 else shown(str(part))  # a 5,000-character key, quoted short
            loc += f"[{part}]" if isinstance(part, int) else (f".{name}" if loc else name)
        msg = user_message(err)
        got = err.get("input")
        quiet = isinstance(got, Mapping | list) or err["type"] in ("missing", "extra_forbidden")
        extra = "" if quiet else f" (got {shown(got)})"
        if err["type"] == "extra_forbidden" and model is not None:
            close = difflib.get_close_matches(str(err["loc"][-1])[:100], _field_names(model, err["loc"][:-1]), n=1)
            extra = f" (did you mean {close[0]!r}?)" if close else ""
        lines.append(f"{path}: {loc or '(top level)'}: {msg}{extra}")
    return "\n".join(lines)


def validate(model: type[Model], data: object, path: Path, *, context: dict | None = None) -> Model:
    """Validate parsed YAML against a pydantic model, turning errors into InputError."""
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InputError(format_validation_error(path, exc, model)) from None


def _target_mode(target: Path) -> int:
    """Permission bits for the written file: the existing file's, else what open() would give (0o666 & ~umask)."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
        os.umask(mask)
        return 0o666 & ~mask
    kind = _not_regular(info.st_mode)
    if kind is not None:  # replacing /dev/null, a pipe someone reads, or a directory is never what was meant
        raise InputError(f"{target}: is {kind}, not a regular file; refusing to replace it.")
    return stat.S_IMODE(info.st_mode)


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable; filesystems that cannot fsync a directory are skipped."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` with `text` (str as UTF-8; bytes, e.g. an image, as they are) so that a reader or a
    crash sees the old file or the new one, never half.

    A temporary file in the target's directory is written, fsynced, given the old file's permission
    bits (a new file: 0o666 & ~umask) and renamed over the target; then the directory is fsynced.
    A symlink is written *through*: its target file is replaced and the link stays a link (as editors
    do; a dangling link creates its target). A target that is not a regular file (a directory, FIFO,
    device) is refused. Raises InputError when the path cannot be written; nothing is left behind.
    """
    try:
        target = Path(os.path.realpath(path))
        mode = _target_mode(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot write here: {getattr(exc, 'strerror', None) or exc}.") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8") if isinstance(text, str) else text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write here: {exc.strerror}.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


class _NoAliasDumper(yaml.SafeDumper):
    """Plans are read by people: repeated values are written out, never as &anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_yaml(data: object) -> str:
    """Deterministic YAML: sorted keys, block style, no aliases, fixed width."""
    return yaml.dump(
        data, Dumper=_NoAliasDumper, sort_keys=True, default_flow_style=False, width=100, allow_unicode=True
    )
