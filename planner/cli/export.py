"""`hexplan export`: hand a plan to the tools around it — Kubernetes manifests (built by the launcher,
launcher.k8s, imported here only for --to k8s), NVIDIA AIConfigurator estimates and `vllm bench serve`
runs (planner.outputs). Thin: read the plan, call one builder, write the files atomically."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import (
    CalibrationOption,
    ClusterOption,
    PlanArgument,
    ProfilesOption,
    app,
    console,
    evaluate_plan_file,
)
from planner.plans.schema import Plan, read_plan
from planner.yamlio import dump_yaml, write_atomic


class Target(StrEnum):
    k8s = "k8s"
    aisimulate = "aisimulate"
    vllm_bench = "vllm-bench"


@app.command()
def export(
    plan_file: PlanArgument,
    to: Annotated[Target, typer.Option("--to", help="k8s manifests, AIConfigurator estimates, vllm bench runs")],
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write (vllm-bench: a bash script)")],
    cluster: ClusterOption = None,
    image: Annotated[str | None, typer.Option(help="k8s: the vLLM image [default: vllm/vllm-openai, pinned]")] = None,
    router_image: Annotated[str | None, typer.Option(help="k8s: an image with hexgen2[launch] installed")] = None,
    name: Annotated[str, typer.Option(help="k8s: prefix of every object's name")] = "hexgen2",
    namespace: Annotated[str | None, typer.Option(help="k8s: namespace (default: kubectl's)")] = None,
    router_url: Annotated[str, typer.Option(help="vllm-bench: where the router listens")] = "http://127.0.0.1:8000",
    result_dir: Annotated[str, typer.Option(help="vllm-bench: where `vllm bench` saves results")] = "bench-results",
    profiles: ProfilesOption = None,
    calibration: CalibrationOption = None,
) -> None:
    """Hand the plan to the tools around it: Kubernetes, NVIDIA AIConfigurator, `vllm bench serve`."""
    if to is Target.k8s:
        settings = {"image": image, "router_image": router_image, "name": name, "namespace": namespace}
        write_atomic(output, k8s_manifests(read_plan(plan_file), plan_file, settings))
        console.print(f"wrote {output}")
        return
    _, plan, the_cluster, _ = evaluate_plan_file(plan_file, cluster, profiles, calibration)
    if to is Target.aisimulate:
        from planner.outputs.aisimulate import aisimulate_document

        header = "# NVIDIA AIConfigurator single-point estimates of this plan's replicas (see `format`).\n"
        write_atomic(output, header + dump_yaml(aisimulate_document(plan, the_cluster, str(plan_file))))
        console.print(f"wrote {output}")
        return
    from planner.inputs.workload import read_trace
    from planner.outputs.vllm_bench import bench_commands, bench_script, timed_trace_jsonl

    workload, trace, trace_file = the_cluster.workload, None, None
    if workload.trace is not None:
        trace = read_trace(workload.trace)
        trace = trace.select(workload.trace_class) if workload.trace_class else trace
        trace_file = output.with_suffix(".timed_trace.jsonl")
        write_atomic(trace_file, timed_trace_jsonl(trace))
        console.print(f"wrote {trace_file}")
    runs = bench_commands(plan, the_cluster, router_url, result_dir, trace, trace_file.name if trace_file else None)
    write_atomic(output, bench_script(plan, str(plan_file), runs))
    console.print(f"wrote {output}")


def k8s_manifests(plan: Plan, plan_file: Path, settings: dict[str, str | None]) -> str:
    """The launcher's manifests for `plan` (hexlaunch's engine options: the plan's model_path, model name
    and connector), checked before they are written."""
    from launcher.k8s import K8sOptions, check_manifests, engine_secret_name, manifests, to_yaml
    from launcher.vllm_args import EngineOptions

    options = EngineOptions(
        model=plan.model_path or plan.model, served_name=plan.model, connector=plan.solver.connector
    )
    k8s = K8sOptions(**{k: v for k, v in settings.items() if v is not None})
    header = (
        f"hexplan export --to k8s of {plan_file}: {len(plan.replicas)} replicas of {plan.model} and the router.\n"
        f"Label every Kubernetes node with hexgen2.io/node=<plan node> and hexgen2.io/gpu=<GPU type>; the\n"
        f"engines run {k8s.image}, the router {k8s.router_image}. Create the engines' shared secret first:\n"
        f"kubectl create secret generic {engine_secret_name(k8s.name)} --from-literal=key=$(openssl rand -hex 32)\n"
        f"README: 'Export: Kubernetes'."
    )
    text = to_yaml(manifests(plan, options, k8s, plan_file), header)
    problems = check_manifests(text)
    if problems:  # a bug in the builder, not bad input: keep the traceback
        raise AssertionError("the k8s manifests do not validate:\n" + "\n".join(problems))
    return text
