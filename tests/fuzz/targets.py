"""What each fuzz case feeds to which command: one builder per target, chosen by weight.

Builders pick a seed from the corpus, mutate it (tests/fuzz/mutate.py and cases.py), and set the
expectations the runner checks: `expect_bad` (must exit 2), `culprits` (the file or option a
message must name), `output` (a -o target that must survive a failure).
"""

from __future__ import annotations

import copy
import json
import math
import random
from collections.abc import Callable

from . import cases, mutate
from .cases import BAD_FLOATS, ODD_FLOATS, SPECIALS, Case
from .corpus import CATALOGUE, EXAMPLES, HF_CONFIG, Corpus

# Every fuzzed simulate/compare runs with --max-requests 20,000: the default 2,000,000 admits runs of minutes,
# legitimately, and a fuzz input may take 10 s of CPU at most; the bound's mechanism is the same.
MAX_REQUESTS = 20_000
SOLVE = ["--time-limit", "2", "-q"]
SIM = ["--duration", "20"]
D = "{dir}/"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _is_bad(text: str) -> bool:
    value = _float(text)
    return value is None or not (math.isfinite(value) and value > 0)


def _cluster_files(case: Case, tree: dict, data: bytes | None = None) -> None:
    case.files["cluster.yaml"] = data if data is not None else cases.dump(tree, random.Random(0))
    case.files.setdefault("trace.csv", b"")
    case.files.setdefault("config.json", json.dumps(HF_CONFIG).encode())


def _network(rng: random.Random, tree: dict) -> tuple[dict, str]:
    """Legal network shorthands (what the README allows): validate and solve must agree on them."""
    names = [n["name"] for n in tree.get("nodes", []) if isinstance(n, dict) and "name" in n]
    links = ("100Gbps", {"bandwidth": "25GB/s"}, {"bandwidth": "1Gbps", "latency": "1s"})
    network: dict = {"default": rng.choice(links)}
    if rng.random() < 0.5:
        network["cross_zone"] = rng.choice(("10Gbps", {"bandwidth": "50Gbps"}))
        for i, node in enumerate(tree.get("nodes", [])):
            if isinstance(node, dict):
                node["zone"] = f"z{i % 2}"
    if rng.random() < 0.5 and len(names) >= 2:
        network["links"] = [{"between": rng.sample(names, 2), "bandwidth": rng.choice(("400Gbps", "1Mbps"))}]
    if rng.random() < 0.3:
        del network["default"]
    tree["network"] = network
    return tree, f"network {network}"


def _grow(rng: random.Random, tree: dict) -> tuple[dict, str]:
    """More (small) nodes: copies of existing ones under new names."""
    nodes = [n for n in tree.get("nodes", []) if isinstance(n, dict)]
    if not nodes:
        return tree, "grow: no nodes"
    extra = rng.choice((2, 8, 24))
    for i in range(extra):
        node = copy.deepcopy(rng.choice(nodes))
        node.update(name=f"extra-{i}", count=rng.choice((1, 2, 3, 5, 8)))
        tree["nodes"].append(node)
    return tree, f"{extra} extra nodes"


CLUSTER_EXTRA = (_network, _grow, _network)


def cluster(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    tree = copy.deepcopy(corpus.clusters[rng.choice(corpus.cluster_names)])
    _cluster_files(case, tree, cases.mutate_tree(rng, tree, case, CLUSTER_EXTRA))
    case.culprits = ("cluster.yaml",)
    if rng.random() < 0.3:
        case.argv, case.output = ["solve", D + "cluster.yaml", "-o", D + "out.yaml", *SOLVE], "out.yaml"
    else:
        case.argv = ["validate", D + "cluster.yaml"]
    return case


def _plan_command(rng: random.Random, case: Case, plan: str, original: str) -> None:
    command = rng.choice(("show", "evaluate", "check", "diff", "simulate", "launch", "launch", "draw", "export"))
    if command == "evaluate":
        case.argv, case.output = ["evaluate", plan, "-o", D + "out.yaml"], "out.yaml"
    elif command == "draw":
        case.argv, case.output = ["draw", plan, "-o", D + "out.svg"], "out.svg"
    elif command == "export":
        target = rng.choice(("k8s", "aisimulate", "vllm-bench"))
        case.argv, case.output = ["export", plan, "--to", target, "-o", D + "out.txt"], "out.txt"
    elif command == "diff":
        case.argv, case.exit1_ok = ["diff", *rng.sample([plan, original], 2), "-f", rng.choice(("json", "table"))], True
    elif command == "check":
        case.argv, case.exit1_ok = ["check", plan], True
    elif command == "simulate":
        case.argv = ["simulate", plan, *SIM, *rng.choice(([], ["--json"], ["--sweep"]))]
    elif command == "launch":
        case.program = "hexlaunch"
        case.argv = [plan, "--dry-run", "--state-dir", D + "state", *rng.choice(([], ["--format", "json"]))]
    else:
        case.argv = ["show", plan]


def plan(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    name = rng.choice(corpus.plan_names)
    tree = copy.deepcopy(corpus.plans[name])
    if rng.random() < 0.15:
        case.files["plan.yaml"] = cases.mutate_bytes(rng, corpus.plan_texts[name], case)
    else:
        case.files["plan.yaml"] = cases.mutate_tree(rng, tree, case, cases.plan_mutations(corpus) * 2)
    case.files["original.yaml"] = corpus.plan_texts[name]
    case.culprits = ("plan.yaml",)
    _plan_command(rng, case, D + "plan.yaml", D + "original.yaml")
    return case


def cross(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    """An intact plan evaluated on a mutated cluster (--cluster)."""
    name = rng.choice(corpus.plan_names)
    case.files["plan.yaml"] = corpus.plan_texts[name]
    tree = copy.deepcopy(corpus.clusters["tiny.yaml"])
    _cluster_files(case, tree, cases.mutate_tree(rng, tree, case, CLUSTER_EXTRA))
    case.culprits = ("cluster.yaml",)
    command = rng.choice(("evaluate", "check", "simulate"))
    case.argv = [command, D + "plan.yaml", "--cluster", D + "cluster.yaml", *(SIM if command == "simulate" else [])]
    case.exit1_ok = command == "check"
    return case


def trace(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    case.files["trace.csv"] = cases.trace_rows(rng, corpus.trace, case)
    case.culprits = ("trace.csv",)
    if rng.random() < 0.6:
        case.files["plan.yaml"] = corpus.plan_texts["tiny.plan.yaml"]
        extra = rng.choice(([], ["--speedup", rng.choice(ODD_FLOATS)], ["--duration", "100"], ["--json"]))
        case.argv = ["simulate", D + "plan.yaml", "--trace", D + "trace.csv", *extra]
    else:
        _cluster_files(case, corpus.clusters["trace-conv.yaml"])
        case.argv = rng.choice((["validate", D + "cluster.yaml"], ["solve", D + "cluster.yaml", *SOLVE]))
    return case


def _special_slot(rng: random.Random, corpus: Corpus, case: Case, kind: str) -> None:
    """Put a hostile file where a command reads one: an argument, or a path named inside a file."""
    tiny = copy.deepcopy(corpus.clusters["tiny.yaml"])
    plan_tree = copy.deepcopy(corpus.plans["tiny.plan.yaml"])
    slot = rng.choice(("cluster", "plan", "trace-option", "cluster-option", "cluster.file", "workload.trace",
                       "model", "profiles", "baseline", "launch"))  # fmt: skip
    case.notes.append(f"{kind} as {slot}")
    if slot in ("cluster", "profiles", "baseline"):
        case.culprits = ("bad",)
        if slot == "cluster":
            case.files["bad"] = kind
            case.argv = rng.choice((["validate", D + "bad"], ["solve", D + "bad", *SOLVE]))
        elif slot == "profiles":
            case.files["prof/bad.yaml"] = kind  # a missing one: the directory itself is missing
            directory = D + ("prof" if kind != "missing" else "bad")
            case.argv = ["validate", str(EXAMPLES / "tiny.yaml"), "--profiles", directory]
        else:
            case.files["bad"] = kind
            case.argv = ["solve", str(EXAMPLES / "tiny.yaml"), "--baseline", D + "bad", *SOLVE]
    elif slot in ("plan", "launch", "trace-option", "cluster-option"):
        case.files["bad"] = kind
        case.files["plan.yaml"] = corpus.plan_texts["tiny.plan.yaml"]
        case.culprits = ("bad",)
        case.argv = {
            "plan": ["simulate", D + "bad", *SIM],
            "launch": [D + "bad", "--dry-run"],
            "trace-option": ["simulate", D + "plan.yaml", "--trace", D + "bad"],
            "cluster-option": ["evaluate", D + "plan.yaml", "--cluster", D + "bad"],
        }[slot]
        case.program = "hexlaunch" if slot == "launch" else "hexplan"
    elif slot == "cluster.file":
        plan_tree["cluster"]["file"] = D + "bad"
        case.files["bad"] = kind
        case.files["plan.yaml"] = cases.dump(plan_tree, rng)
        case.culprits = ("plan.yaml",)
        case.argv = [rng.choice(("evaluate", "check", "simulate")), D + "plan.yaml"]
    else:
        key = {"workload.trace": "trace", "model": "model"}[slot]
        if key == "trace":
            tiny["workload"] = {"trace": "bad"}
        else:
            tiny["model"] = "bad.json"
        case.files["bad" if key == "trace" else "bad.json"] = kind
        _cluster_files(case, tiny)
        case.culprits = ("cluster.yaml",)
        case.argv = rng.choice((["validate", D + "cluster.yaml"], ["solve", D + "cluster.yaml", *SOLVE]))


def hostile(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    case.expect_bad = True
    if rng.random() < 0.2:  # odd strings as the plan's cluster.file
        plan_tree = copy.deepcopy(corpus.plans["tiny.plan.yaml"])
        plan_tree["cluster"]["file"] = rng.choice((".", "", "/", "x" * 5000, "a\x00b", "/dev/null", "/proc/self/mem"))
        case.files["plan.yaml"] = cases.dump(plan_tree, rng)
        case.culprits = ("plan.yaml",)
        case.argv = [rng.choice(("evaluate", "check")), D + "plan.yaml"]
        case.notes.append(f"cluster.file {plan_tree['cluster']['file']!r:.30}")
        return case
    _special_slot(rng, corpus, case, rng.choice(SPECIALS))
    return case


def hf_config(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    case.files["config.json"] = cases.mutate_tree(rng, dict(HF_CONFIG), case)
    _cluster_files(case, corpus.clusters["hf-config.yaml"])
    case.culprits = ("config.json", "cluster.yaml")  # a model that does not fit is the cluster's problem
    case.argv = rng.choice((["validate", D + "cluster.yaml"], ["solve", D + "cluster.yaml", *SOLVE]))
    return case


def profiles(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    case.files["prof/extra.yaml"] = cases.mutate_tree(rng, copy.deepcopy(CATALOGUE), case)
    case.culprits = ("extra.yaml",)
    command = rng.choice(
        (["profiles", rng.choice(("gpus", "links", "models"))], ["validate", str(EXAMPLES / "tiny.yaml")])
    )
    case.argv = [*command, "--profiles", D + "prof"]
    return case


def options(rng: random.Random, corpus: Corpus, case: Case) -> Case:
    """Hostile option values: non-finite, non-positive, huge request counts, junk durations."""
    case.files["plan.yaml"] = corpus.plan_texts["tiny.plan.yaml"]
    case.files["trace.csv"] = corpus.trace.encode()
    command = rng.choice(("simulate", "simulate", "simulate", "solve", "launch", "compare"))
    values = {o: rng.choice(BAD_FLOATS + ODD_FLOATS * 2) for o in ("--rate", "--duration", "--speedup")}
    chosen = rng.sample(sorted(values), k=rng.choice((1, 2)))
    bad = [o for o in chosen if _is_bad(values[o])]
    if command == "simulate":
        use_trace = "--rate" not in chosen and rng.random() < 0.4
        if not use_trace:
            chosen = [o for o in chosen if o != "--speedup"] or ["--rate"]
            bad = [o for o in chosen if _is_bad(values[o])]
        case.argv = ["simulate", D + "plan.yaml", *(["--trace", D + "trace.csv"] if use_trace else [])]
        case.argv += [x for o in chosen for x in (o, values[o])]
        if "--duration" not in chosen and not use_trace:
            case.argv += ["--duration", "30"]  # the default 300 s is seconds of CPU per run; the bounds are the point
        if rng.random() < 0.2:
            case.argv.append("--sweep")
            bad += ["--sweep"] if use_trace or "--rate" in chosen else []  # --sweep chooses the rates itself
        if rng.random() < 0.2:
            slo, value = rng.choice(("--ttft", "--tpot")), rng.choice(("abc", "0s", "-1s", "1e400s", "nanms", "2s"))
            case.argv += [slo, value]
            bad += [slo] if value != "2s" else []
        rate = _float(values["--rate"]) if "--rate" in chosen else None
        duration = _float(values["--duration"]) if "--duration" in chosen else 30.0
        if not bad and rate is not None and duration is not None and rate * duration > MAX_REQUESTS:
            bad = ["--rate"]
    elif command == "compare":
        value = values["--duration"]
        case.argv = ["compare", str(EXAMPLES / "tiny.yaml"), "--duration", value, "--time-limit", "1"]
        bad = ["--duration"] if _is_bad(value) or (_float(value) or 0) > 100 else []  # tiny: ~80 req/s at 1.5× load
    elif command == "solve":
        option = rng.choice(("--slo-ttft", "--slo-tpot", "--objective", "--connector", "--seed", "--max-moved-gpus"))
        value = rng.choice(("abc", "-1", "0s", "1e400s", "nanms", "2s", "cost", "none", "10**20", "1"))
        case.argv = ["solve", str(EXAMPLES / "tiny.yaml"), option, value, *SOLVE]
        bad = [] if (option, value) in (("--slo-ttft", "2s"), ("--slo-tpot", "2s"), ("--objective", "cost"),
                                        ("--connector", "none"), ("--seed", "1")) else [option]  # fmt: skip
    else:
        option = rng.choice(("--connector", "--format", "--base-port", "--engine-cmd", "--model", "--seed"))
        value = rng.choice(("'", "", "-5", "99999999", "nixl", "json", "x" * 300, "1"))
        case.program, case.argv = "hexlaunch", [D + "plan.yaml", "--dry-run", option, value]
        bad = []  # some are fine (e.g. --model x), some not: only crashes and hangs count
    case.expect_bad = bool(bad)
    case.culprits = tuple(bad)
    case.notes.append(" ".join(case.argv[2:]))
    return case


TARGETS: dict[str, tuple[Callable[[random.Random, Corpus, Case], Case], int]] = {
    "cluster": (cluster, 20),
    "plan": (plan, 24),
    "cross": (cross, 6),
    "trace": (trace, 10),
    "hostile": (hostile, 16),
    "hf-config": (hf_config, 6),
    "profiles": (profiles, 4),
    "options": (options, 14),
}


def build_case(corpus: Corpus, seed: int, index: int) -> Case:
    """Case `index` of run `seed`: deterministic."""
    rng = random.Random(f"{seed}:{index}")
    names = list(TARGETS)
    target = rng.choices(names, weights=[TARGETS[n][1] for n in names])[0]
    case = TARGETS[target][0](rng, corpus, Case(index, "hexplan", []))
    case.notes.insert(0, target)
    if case.program == "hexplan" and case.argv[0] in ("simulate", "compare"):
        case.argv += ["--max-requests", str(MAX_REQUESTS)]
    return case


__all__ = ["build_case", "mutate"]
