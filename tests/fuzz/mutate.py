"""Mutation operators: structured edits of parsed YAML/JSON trees, and raw edits of text and bytes.

Why our own (and not hypothesis): a fuzz run must be reproducible from (seed, index) alone and
cheap per input; every operator takes a `random.Random` and returns a new value, never mutating
its input. Each returns a short description, which names the mutation in reports.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

HOSTILE_NUMBERS: tuple[Any, ...] = (
    0, -1, -1e9, 1e308, 10**30, float("nan"), float("inf"), float("-inf"), 2**63, 1e-300, 0.5, True,
)  # fmt: skip
HOSTILE_STRINGS: tuple[str, ...] = (
    "", " ", "Ĥ100-ŞXM", "\u202eevil", "ze\u200bro", "e\u0301", "🚀🚀", "\t", "a\nb", "..", "/", "null", "~",
    "100Gbps", "-5Gbps", "nanGbps", "infus", "1e999us", "$-1/h", "80GB", "0us", "1e-30GB", ".nan", "!!binary",
)  # fmt: skip
HOSTILE_VALUES: tuple[Any, ...] = (None, [], {}, [[]], {"a": 1}, ["x"], "x" * 5, *HOSTILE_NUMBERS, *HOSTILE_STRINGS)

Tree = Any
Path_ = tuple[Any, ...]


def paths(tree: Tree, prefix: Path_ = ()) -> list[Path_]:
    """Every location in a tree (dict keys and list indexes), the root first."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += paths(value, (*prefix, i))
    return found


def get(tree: Tree, path: Path_) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: Tree, path: Path_, value: Any) -> Tree:
    if not path:
        return value
    parent = get(tree, path[:-1])
    parent[path[-1]] = value
    return tree


def _pick(rng: random.Random, tree: Tree, want: Callable[[Any], bool] = lambda _: True) -> Path_ | None:
    candidates = [p for p in paths(tree) if p and want(get(tree, p))]
    return rng.choice(candidates) if candidates else None


def _where(path: Path_) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def delete_key(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree)
    if path is None:
        return tree, "delete: nothing"
    parent = get(tree, path[:-1])
    del parent[path[-1]]
    return tree, f"delete {_where(path)}"


def replace_value(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    """Wrong types, hostile numbers and strings, anywhere."""
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree)
    if path is None:
        return tree, "replace: nothing"
    value = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    return _set(tree, path, value), f"replace {_where(path)} with {value!r:.40}"


def scale_number(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    """A plausible number made huge, negative or tiny (counts, ranges, rates)."""
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree, lambda v: isinstance(v, int | float) and not isinstance(v, bool))
    if path is None:
        return replace_value(rng, tree)
    factor = rng.choice((-1, 0, 2, 3, 10, 1000, 10**6, 10**12))
    value = get(tree, path) * factor + rng.choice((0, 1, -1))
    return _set(tree, path, value), f"scale {_where(path)} to {value!r:.40}"


def unit_string(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    """Unit strings with hostile magnitudes: '1e400Gbps', '-3us', 'nanGB', '0us'."""
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree, lambda v: isinstance(v, str) and any(c.isdigit() for c in v))
    if path is None:
        return replace_value(rng, tree)
    old = get(tree, path)
    digits = "".join(c for c in old if c.isdigit() or c == ".")
    magnitude = rng.choice(("1e400", "-3", "nan", "inf", "0", "1e-320", "9" * 400, "1_000", "0x10"))
    value = old.replace(digits, magnitude, 1) if digits else magnitude + old
    return _set(tree, path, value), f"unit {_where(path)} = {value!r:.40}"


def long_string(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree, lambda v: isinstance(v, str))
    if path is None:
        return replace_value(rng, tree)
    value = rng.choice(("x", "Ĥ", "a/", "9")) * rng.choice((300, 5000, 200_000))
    return _set(tree, path, value), f"long string at {_where(path)} ({len(value)} chars)"


def duplicate_item(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    """A list element repeated (duplicate nodes, replicas, stages, routes)."""
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree, lambda v: isinstance(v, list) and v)
    if path is None:
        return replace_value(rng, tree)
    items = get(tree, path)
    items.insert(rng.randrange(len(items) + 1), copy.deepcopy(rng.choice(items)))
    return tree, f"duplicate an item of {_where(path)}"


def add_key(rng: random.Random, tree: Tree) -> tuple[Tree, str]:
    tree = copy.deepcopy(tree)
    path = _pick(rng, tree, lambda v: isinstance(v, dict)) or ()
    target = get(tree, path)
    if not isinstance(target, dict):
        return replace_value(rng, tree)
    key = rng.choice(("gpus", "latnecy", "extra", "", "nodes", "1", "Ĥ"))
    target[key] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    return tree, f"add key {key!r} at {_where(path)}"


TREE_MUTATIONS = (
    delete_key, replace_value, scale_number, unit_string, long_string, duplicate_item, add_key,
)  # fmt: skip


# ---- raw text and bytes


def truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(data) + 1) if data else 0
    return data[:cut], f"truncate at byte {cut}"


def junk(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    at = rng.randrange(len(data) + 1) if data else 0
    blob = bytes(rng.randrange(256) for _ in range(rng.choice((1, 8, 64))))
    return data[:at] + blob + data[at:], f"{len(blob)} junk bytes at {at}"


def flip_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    out = bytearray(data)
    for _ in range(rng.choice((1, 3, 10))):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out), "flipped bytes"


def duplicate_line(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Repeats a line: in YAML a duplicated key, in a CSV a duplicated row."""
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines), f"duplicate line {i + 1}"


def yaml_tag(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    tag = rng.choice(
        (b"!!python/object/apply:os.system ['true']", b"!!binary AAAA", b"!!set {a, b}", b"!custom 1",
         b"!!timestamp 2001-12-14", b"!!float nan", b"!!int 0x7fffffffffffffffffff", b"&a [*a]", b"*nowhere")
    )  # fmt: skip
    lines = data.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b": " in line]
    if not candidates:
        return tag + b"\n" + data, "tag at top"
    i = rng.choice(candidates)
    key, _, _ = lines[i].partition(b": ")
    lines[i] = key + b": " + tag
    return b"\n".join(lines), f"tag {tag.decode()} on line {i + 1}"


def alias_bomb(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    levels = rng.choice((5, 12, 25))
    bomb = [b'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]".encode() for i in range(1, levels)]
    return data + b"\n" + b"\n".join(bomb) + b"\n", f"alias bomb of {levels} levels"


def deep_nesting(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """A value nested thousands deep, as flow-style text (a tree that deep would break the fuzzer itself)."""
    depth = rng.choice((50, 500, 5000, 50_000))
    opener, closer = rng.choice(((b"[", b"]"), (b"{k: ", b"}")))
    nested = opener * depth + b"1" + closer * depth
    lines = data.split(b"\n")
    candidates = [i for i, line in enumerate(lines) if b": " in line]
    if not candidates:
        return nested, f"nesting {depth} deep at the top"
    i = rng.choice(candidates)
    lines[i] = lines[i].partition(b": ")[0] + b": " + nested
    return b"\n".join(lines), f"nesting {depth} deep on line {i + 1}"


BYTES_MUTATIONS = (truncate, junk, flip_bytes, duplicate_line, yaml_tag, alias_bomb, deep_nesting)
