"""Fuzz cases: a seed file from the corpus, a few mutations, the files they make and the command to run.

Case `i` of seed `s` is a pure function of (s, i) and the corpus, so a report's (seed, index)
reproduces it exactly. Every case is written into its own directory; the command refers to
those files by absolute path. Hostile "files" (a FIFO, /dev/zero, a directory, a file over the
size cap, a symlink loop, a missing path) replace a file argument or a path named inside a file.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from planner.yamlio import MAX_FILE_BYTES

from . import mutate
from .corpus import Corpus

SPECIALS = ("fifo", "devzero", "dir", "huge", "loop", "missing")
SENTINEL = b"sentinel: this output must survive a failed command\n"
BAD_FLOATS = ("nan", "inf", "-inf", "-1", "0", "1e309", "abc", "")
ODD_FLOATS = ("1e9", "1e-9", "1e300", "1e-300", "0.001", "7", "1e12")


@dataclass
class Case:
    """One fuzz input. `files` maps a name in the case directory to bytes, or to a SPECIALS kind."""

    index: int
    program: str  # hexplan | hexlaunch
    argv: list[str]
    files: dict[str, bytes | str] = field(default_factory=dict)
    expect_bad: bool = False  # the input is certainly invalid: the command must exit 2
    culprits: tuple[str, ...] = ()  # a message about bad input must name one: a file name or an option
    output: str | None = None  # -o target, pre-filled with SENTINEL; must be unchanged on failure
    exit1_ok: bool = False  # diff/check use exit 1 for a failed gate or a stale plan
    notes: list[str] = field(default_factory=list)

    def materialise(self, directory: Path) -> list[str]:
        """Write the case's files under `directory`; return argv with {dir} filled in."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.files.items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):  # paths written inside files may name the case directory too
                path.write_bytes(content.replace(b"{dir}", str(directory).encode()))
            else:
                make_special(path, content)
        if self.output:
            (directory / self.output).write_bytes(SENTINEL)
        return [a.replace("{dir}", str(directory)) for a in self.argv]


def make_special(path: Path, kind: str) -> Path:
    """A hostile non-file (one of SPECIALS) at `path`; "missing" leaves nothing there. Shared with
    tests/test_hostile_files.py."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "dir":
        path.mkdir()
    elif kind == "huge":
        with path.open("wb") as handle:
            handle.truncate(MAX_FILE_BYTES + 1)  # over the readers' cap; sparse, so it costs no disk
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind != "missing":
        raise ValueError(kind)
    return path


def dump(tree: object, rng: random.Random) -> bytes:
    """YAML (or, one time in four, JSON, which YAML also reads) of a mutated tree; unrepresentable → repr."""
    try:
        if rng.random() < 0.25:
            return json.dumps(tree, allow_nan=True).encode()
        return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False, width=10**6).encode()
    except (yaml.YAMLError, RecursionError, TypeError, ValueError):
        return repr(tree).encode()


def mutate_tree(rng: random.Random, tree: object, case: Case, extra: tuple = ()) -> bytes:
    """1–3 structured mutations (plus target-specific ones in `extra`), then maybe a raw one."""
    operators = (*mutate.TREE_MUTATIONS, *extra)
    for _ in range(rng.choice((1, 1, 2, 3))):
        try:
            tree, note = rng.choice(operators)(rng, tree)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):  # an earlier mutation broke its shape
            tree, note = mutate.replace_value(rng, tree)
        case.notes.append(note)
    data = dump(tree, rng)
    if rng.random() < 0.2:
        data, note = rng.choice(mutate.BYTES_MUTATIONS)(rng, data)
        case.notes.append(note)
    return data


def mutate_bytes(rng: random.Random, data: bytes, case: Case) -> bytes:
    data, note = rng.choice(mutate.BYTES_MUTATIONS)(rng, data)
    case.notes.append(note)
    return data


# ---- target-specific mutations


def plan_mutations(corpus: Corpus) -> tuple:
    gpu_ids = corpus.gpu_ids

    def dangling_gpu(rng: random.Random, plan: dict) -> tuple[dict, str]:
        replica = rng.choice(plan["replicas"])
        stage = rng.choice(replica["stages"])
        stage["gpus"][rng.randrange(len(stage["gpus"]))] = rng.choice(("nowhere/0", "a100-0/99", "l40-0/4"))
        return plan, f"dangling GPU in {replica['id']}"

    def layers(rng: random.Random, plan: dict) -> tuple[dict, str]:
        replica = rng.choice(plan["replicas"])
        stage = rng.choice(replica["stages"])
        stage["layers"] = rng.choice(([0, 10], [5, 2], [0, 1000], [-3, 8], [0, 0], [10, 90], [1, 32]))
        if rng.random() < 0.5:
            replica["stages"].append({"gpus": list(stage["gpus"]), "layers": [4, 20]})
        return plan, f"layers of {replica['id']} → {[s['layers'] for s in replica['stages']]}"

    def tensor_parallel(rng: random.Random, plan: dict) -> tuple[dict, str]:
        replica = rng.choice(plan["replicas"])
        node = rng.choice(sorted({g.split("/")[0] for g in gpu_ids}))
        tp = rng.choice((3, 5, 6, 7, 2, 1))
        gpus = [f"{node}/{i}" for i in range(tp)]
        replica.update(tp=tp, gpus=gpus, stages=[{"gpus": gpus, "layers": replica["stages"][0]["layers"]}])
        replica["stages"][0]["layers"] = [0, replica["stages"][-1]["layers"][1]]
        return plan, f"{replica['id']} at TP {tp} on {node}"

    def route(rng: random.Random, plan: dict) -> tuple[dict, str]:
        if not plan["routes"]:
            plan["routes"].append({"from": "p-x", "to": "d-y", "rate_rps": 1.0, "capacity_rps": 1.0, "kv_gbps": 1.0})
        chosen = rng.choice(plan["routes"])
        chosen[rng.choice(("from", "to"))] = rng.choice(("p-nowhere-000000", chosen["from"], chosen["to"]))
        chosen["rate_rps"] = rng.choice((chosen["rate_rps"], 1e12, -1.0, 0.0))
        return plan, "route edited"

    def engine(rng: random.Random, plan: dict) -> tuple[dict, str]:
        replica = rng.choice(plan["replicas"])
        key = rng.choice(("max_num_seqs", "max_num_batched_tokens", "max_model_len", "gpu_memory_utilization"))
        replica["engine"][key] = rng.choice((1, 10**9, 10**18, 0.01, 2**31))
        return plan, f"engine.{key} of {replica['id']} = {replica['engine'][key]}"

    return (dangling_gpu, layers, tensor_parallel, route, engine)


def trace_rows(rng: random.Random, text: str, case: Case) -> bytes:
    """CSV-level mutations of a trace: token bounds, time zones and formats, huge fields, spans."""
    lines = text.splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    kind = rng.choice(("tokens", "timestamp", "field", "empty", "span", "columns", "quote", "raw"))
    case.notes.append(f"trace: {kind}")
    if kind == "tokens":
        value = rng.choice(("100000000", "1" + "0" * 30, "-5", "0", "nan", "1e3", " 12 ", "12.0"))
        rng.choice(rows)[rng.choice((1, 2))] = value
        case.expect_bad = value != " 12 "
    elif kind == "timestamp":
        for row in rng.sample(rows, k=min(len(rows), rng.choice((1, 3, len(rows))))):
            base = row[0].split(".")[0]
            row[0] = rng.choice(
                (base.replace(" ", "T") + "+05:30", base + "Z", base + ".123456789-08:00", base[11:], "1700000000",
                 base.replace("-", "/"), base + ".5+02:00", "0001-01-01 00:00:00+14:00", "9999-12-31 23:59:59-12:00")
            )  # fmt: skip
    elif kind == "field":
        rng.choice(rows)[rng.randrange(3)] = "9" * rng.choice((200_000, 5000))
    elif kind == "empty":
        rows = []
        header = rng.choice((header, ""))
        case.expect_bad = True
    elif kind == "span":
        rows = [["0001-01-01 00:00:00", "100", "10"], ["9999-12-31 23:59:59.9999999", "100", "10"], *rows[:3]]
    elif kind == "columns":
        row = rng.choice(rows)
        row[:] = row[: rng.randrange(3)] if rng.random() < 0.5 else [*row, "extra", "x"]
    elif kind == "quote":
        rng.choice(rows)[0] = '"' + rng.choice(rows)[0]
    out = "\n".join([header, *(",".join(r) for r in rows)]) + "\n"
    if kind == "raw":
        return mutate_bytes(rng, out.encode(), case)
    return out.encode()
