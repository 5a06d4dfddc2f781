"""Contract check against real vLLM (run by `make test-vllm` with .venv-vllm's python, no GPU needed).

    VLLM_TARGET_DEVICE=cpu .venv-vllm/bin/python tests/vllm_contract.py out/vllm-contract/*.json

Each argument is the output of `hexlaunch PLAN --dry-run --format json`, or of `hexplan export PLAN --to
k8s` (a .yaml: its pods are read back into the same shape by `k8s_processes`), or of `hexplan export PLAN
--to vllm-bench` (a .sh: every `vllm bench serve` line is fed to vLLM's benchmark parser). For every engine process it
feeds the argv after `serve` to vLLM's own `vllm serve` parser (`make_arg_parser`), builds
`AsyncEngineArgs.from_cli_args` from the result, and checks that the values vLLM ends up with are the
plan's: TP, PP, batch limits, context length, memory fraction, multi-node rank and headless mode, the
pinned attention backend, and a `KVTransferConfig` whose connector vLLM knows, with the right role and
engine id. It also checks that every environment variable the launcher sets is one vLLM reads
(VLLM_API_KEY, the deployment secret, included). Prints one line per plan and
exits 1 if anything disagrees. Uses only the standard library and vLLM (not the hexgen2 packages).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path


def check_process(process: dict, role: str, replica: dict, parser, engine_args, connectors, env_names) -> list[str]:
    argv = process["argv"]
    args = argv[argv.index("serve") + 1 :]
    where = f"{process['actor']}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            namespace = parser.parse_args(args)
    except SystemExit:
        lines = [line.strip() for line in stderr.getvalue().splitlines() if line.strip()]
        at = next((i for i, line in enumerate(lines) if ": error:" in line), len(lines) - 1)
        return [f"{where}: vLLM's parser rejected the argv: {' '.join(lines[at : at + 3])}"]
    namespace.model = namespace.model_tag  # what `vllm serve MODEL` does with its positional argument
    engine = engine_args.from_cli_args(namespace)
    value = {a: args[args.index(a) + 1] for a in args if a.startswith("--") and args.index(a) + 1 < len(args)}
    expected = {
        "tensor_parallel_size": replica["tp"],
        "pipeline_parallel_size": replica["pp"],
        "max_num_seqs": int(value["--max-num-seqs"]),
        "max_num_batched_tokens": int(value["--max-num-batched-tokens"]),
        "max_model_len": int(value["--max-model-len"]),
        "gpu_memory_utilization": float(value["--gpu-memory-utilization"]),
        "distributed_executor_backend": "mp",
        "model": args[0],
    }
    if "--nnodes" in args:
        expected |= {"nnodes": int(value["--nnodes"]), "node_rank": process["node_rank"]}
    problems = []
    if "--attention-backend" in args:  # pinned so P and D agree (it is part of NIXL's compatibility hash)
        backend = getattr(engine.attention_backend, "name", engine.attention_backend)
        if backend != value["--attention-backend"]:
            pinned = value["--attention-backend"]
            problems.append(f"{where}: vLLM reads attention backend {backend!r}, the launcher pinned {pinned!r}")
    if bool(getattr(namespace, "headless", False)) != (process["node_rank"] > 0):
        problems.append(f"{where}: --headless is {namespace.headless} on node rank {process['node_rank']}")
    problems += [
        f"{where}: vLLM reads {name}={getattr(engine, name)!r}, the plan says {want!r}"
        for name, want in expected.items()
        if getattr(engine, name) != want
    ]
    config = engine.kv_transfer_config
    if role in ("prefill", "decode"):
        if config is None:
            problems.append(f"{where}: no kv_transfer_config reached vLLM")
        else:
            want_role = "kv_producer" if role == "prefill" else "kv_consumer"
            if config.kv_connector not in connectors:
                problems.append(f"{where}: vLLM has no KV connector named {config.kv_connector}")
            if (config.kv_role, config.engine_id) != (want_role, replica["id"]):
                problems.append(f"{where}: kv_role/engine_id are {config.kv_role}/{config.engine_id}")
    unknown = sorted(set(process["env"]) - env_names - {"CUDA_VISIBLE_DEVICES"})
    if unknown:
        problems.append(f"{where}: vLLM reads no environment variable named {', '.join(unknown)}")
    split = process["env"].get("VLLM_PP_LAYER_PARTITION")
    if split is not None and len(split.split(",")) != replica["pp"]:
        problems.append(f"{where}: VLLM_PP_LAYER_PARTITION={split} does not have {replica['pp']} stages")
    return problems


LWS_WORKER_INDEX = "$(LWS_WORKER_INDEX)"


def k8s_processes(text: str) -> dict:
    """A `hexplan export --to k8s` stream in the dry run's shape: each engine pod's argv and literal env
    (fields from the downward API are Kubernetes plumbing, not vLLM's), its replica's id, role, TP and PP
    from the pod annotations; a LeaderWorkerSet's worker template yields one process per worker rank,
    with `$(LWS_WORKER_INDEX)` replaced by the rank as Kubernetes would. Needs PyYAML (vLLM has it)."""
    import yaml

    replicas: dict[str, dict] = {}
    for doc in yaml.safe_load_all(text):
        if not doc or doc.get("kind") not in ("Deployment", "LeaderWorkerSet"):
            continue
        if doc["kind"] == "Deployment":
            templates, size = [doc["spec"]["template"]], 1
        else:
            group = doc["spec"]["leaderWorkerTemplate"]
            templates, size = [group["leaderTemplate"], group["workerTemplate"]], group["size"]
        for template in templates:
            notes = template["metadata"].get("annotations", {})
            if "hexgen2.io/replica-id" not in notes:
                continue  # the router
            role = template["metadata"]["labels"]["hexgen2.io/role"]
            replica = replicas.setdefault(
                notes["hexgen2.io/replica-id"],
                {"id": notes["hexgen2.io/replica-id"], "role": role, "tp": int(notes["hexgen2.io/tp"]),
                 "pp": int(notes["hexgen2.io/pp"]), "processes": []},
            )  # fmt: skip
            container = template["spec"]["containers"][0]
            env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            rank = notes["hexgen2.io/node-rank"]
            ranks = range(1, size) if rank == LWS_WORKER_INDEX else [int(rank)]
            for r in ranks:
                argv = [str(r) if a == LWS_WORKER_INDEX else a for a in container["command"]]
                actor = f"k8s {doc['kind']} {doc['metadata']['name']} rank {r}"
                replica["processes"].append({"actor": actor, "node_rank": r, "argv": argv, "env": env})
    return {"problems": [], "replicas": list(replicas.values()), "connector": "from the plan"}


def bench_problems(script: str) -> list[str]:
    """Every `vllm bench serve` line of a `hexplan export --to vllm-bench` script, parsed by vLLM's own
    benchmark parser; problems when it refuses one or reads another rate or dataset than written."""
    import shlex

    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    problems = []
    lines = [shlex.split(line) for line in script.splitlines() if line.startswith("vllm bench serve")]
    for argv in lines:
        args = argv[3:]
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                namespace = parser.parse_args(args)
        except SystemExit:
            problems.append(f"vLLM's bench parser rejected {shlex.join(args)[:200]}: {stderr.getvalue()[-300:]}")
            continue
        value = {a: args[args.index(a) + 1] for a in args if a.startswith("--") and args.index(a) + 1 < len(args)}
        if "--request-rate" in value and namespace.request_rate != float(value["--request-rate"]):
            problems.append(
                f"vLLM reads request rate {namespace.request_rate}, the script says {value['--request-rate']}"
            )
        if namespace.dataset_name != value["--dataset-name"] or not namespace.save_result:
            problems.append(f"vLLM reads dataset {namespace.dataset_name}, save_result {namespace.save_result}")
    return problems if lines else ["no `vllm bench serve` line in the script"]


def main(paths: list[str]) -> int:
    import vllm
    import vllm.envs
    from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
    from vllm.engine.arg_utils import AsyncEngineArgs

    try:
        from vllm.entrypoints.common.cli_args import make_arg_parser  # vLLM 0.33
    except ModuleNotFoundError:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser  # vLLM 0.32
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    connectors = set(KVConnectorFactory._registry)
    env_names = set(vllm.envs.environment_variables)
    print(f"vLLM {vllm.__version__}: {len(connectors)} KV connectors known")
    failures = 0
    for path in paths:
        if path.endswith(".sh"):
            problems = bench_problems(Path(path).read_text())
            failures += bool(problems)
            print(f"{'ok' if not problems else 'FAILED':6} {path}: vllm bench serve lines")
            for problem in problems:
                print(f"       - {problem}")
            continue
        text = Path(path).read_text()
        doc = k8s_processes(text) if path.endswith((".yaml", ".yml")) else json.loads(text)
        problems = list(doc["problems"])
        processes = 0
        for replica in doc["replicas"]:
            for process in replica["processes"]:
                processes += 1
                problems += check_process(
                    process, replica["role"], replica, parser, AsyncEngineArgs, connectors, env_names
                )
        failures += bool(problems)
        status = "ok" if not problems else "FAILED"
        print(
            f"{status:6} {path}: {len(doc['replicas'])} replicas, {processes} engine argv, connector {doc['connector']}"
        )
        for problem in problems:
            print(f"       - {problem}")
    print(f"{len(paths) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
