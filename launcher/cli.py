"""`hexlaunch`: run a plan on a Ray cluster. Thin: parse, call one function, render.

    hexlaunch PLAN [--address ADDR] [--dry-run] [--format json]   (short for `hexlaunch start PLAN`)
    hexlaunch apply NEW_PLAN | status [--format json] | logs REPLICA | stop

Expected failures (LaunchError, or the planner's errors when reading the plan) print one paragraph
and exit 2; bugs keep their traceback.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import planner
from launcher import state as st
from launcher.errors import LaunchError, listed
from launcher.router_config import HopTimeouts, Limits, RouterSettings, Timeouts
from launcher.vllm_args import EngineOptions, build_launches, catalogue_model, input_problems, plan_problems
from planner.errors import PlannerError  # what read_plan raises for a bad plan file
from planner.plans.schema import read_plan
from planner.types import Connector

app = typer.Typer(
    name="hexlaunch",
    help="Launch a hexgen2 plan: prefill/decode vLLM replicas on Ray behind a KV-aware router. "
    "`hexlaunch PLAN` is short for `hexlaunch start PLAN`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(highlight=False)
console_err = Console(stderr=True, highlight=False)
COMMANDS = ("start", "apply", "status", "logs", "stop", "router")
UNBOUNDED_WIDTH = 10_000


def _print_version(value: bool) -> None:
    if value:
        print(f"hexlaunch (hexgen2) {planner.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Launch a hexgen2 plan: prefill/decode vLLM replicas on Ray behind a KV-aware router.
    `hexlaunch PLAN` is short for `hexlaunch start PLAN`."""


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="where the running deployment is recorded (default $HEXLAUNCH_STATE_DIR or ~/.hexgen2/launch)",
    ),
]
HealthTimeout = Annotated[float, typer.Option(help="seconds to wait for every /health")]


class Format(StrEnum):
    text = "text"
    json = "json"


def report(message: str) -> None:
    console_err.print(f"[dim]hexlaunch:[/] {message}", soft_wrap=True)


def parse_env(pairs: list[str] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq:
            raise LaunchError(f"--env {pair!r}: expected KEY=VALUE (e.g. --env HF_TOKEN=hf_...).")
        out.append((key, value))
    return tuple(out)


def print_table(table: Table) -> None:
    """A table at its natural width when stdout is not a terminal (a pipe, a file, `watch`): rich would
    otherwise cut every row at 80 columns, losing replica ids and URLs. A terminal keeps its own width."""
    wide = console if console.is_terminal else Console(highlight=False, width=UNBOUNDED_WIDTH, file=console.file)
    wide.print(table)


@app.command()
def start(
    plan_file: Annotated[Path, typer.Argument(help="plan.yaml written by `hexplan solve`")],
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default $RAY_ADDRESS, else start a local Ray head)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print every actor, node, GPU, argv and env; start nothing")
    ] = False,
    output_format: Annotated[Format, typer.Option("--format", help="dry-run output")] = Format.text,
    model: Annotated[
        str | None, typer.Option(help="Hugging Face id or local path vLLM loads (default: the plan's model_path)")
    ] = None,
    engine_cmd: Annotated[
        str, typer.Option("--engine-cmd", help="engine executable (and leading args) replacing `vllm`")
    ] = "vllm",
    engine_arg: Annotated[
        list[str] | None, typer.Option("--engine-arg", help="extra argument for every engine; repeatable")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="KEY=VALUE for every engine (HF_TOKEN, UCX_TLS…); repeatable")
    ] = None,
    connector: Annotated[
        Connector | None, typer.Option(help="KV connector (default: the plan's solver.connector)")
    ] = None,
    attention_backend: Annotated[
        str, typer.Option(help="vLLM attention backend pinned on every engine (P and D must agree); 'auto': unpinned")
    ] = "FLASH_ATTN",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="HEXGEN2_API_KEY", help="clients must send `Authorization: Bearer KEY` to the router"),
    ] = None,
    router_host: Annotated[str, typer.Option(help="address the router binds")] = "127.0.0.1",
    router_port: Annotated[int, typer.Option(help="router port")] = 8000,
    base_port: Annotated[int, typer.Option(help="HTTP port of the first replica; the next ones count up")] = 8100,
    side_channel_port: Annotated[int, typer.Option(help="first NIXL side-channel port")] = 5600,
    master_port: Annotated[int, typer.Option(help="first torch.distributed port of multi-node replicas")] = 29500,
    seed: Annotated[int, typer.Option(min=0, help="router seed (phase of its weighted round robin)")] = 0,
    connect_timeout: Annotated[float, typer.Option(help="router → engine connect timeout, s")] = 2.0,
    first_byte_timeout: Annotated[float, typer.Option(help="router → engine: until the answer starts, s")] = 300.0,
    idle_timeout: Annotated[float, typer.Option(help="router → engine: longest pause inside a stream, s")] = 60.0,
    total_timeout: Annotated[float, typer.Option(help="router → engine: one hop in all, s")] = 900.0,
    max_attempts: Annotated[int, typer.Option(min=1, help="tries per request on other replicas")] = 3,
    max_concurrent: Annotated[int, typer.Option(min=1, help="requests in flight before the router says 429")] = 4096,
    skip_node_check: Annotated[
        bool, typer.Option("--skip-node-check", help="do not check each node's vLLM/NIXL against the pinned ones")
    ] = False,
    health_timeout: HealthTimeout = 900.0,
    state_dir: StateDirOption = None,
) -> None:
    """Start the plan's replicas and router (or, with --dry-run, show what would start).

    Long because its signature declares every `start` option (typer reads them from it); the body only
    builds the engine options and router settings and calls the dry run or the Ray backend."""
    from launcher import dryrun, ray_backend

    try:
        engine_argv = tuple(shlex.split(engine_cmd))
    except ValueError as exc:
        raise LaunchError(f"--engine-cmd {engine_cmd!r}: {exc} (it is split like a shell command line).") from None
    if not engine_argv:
        raise LaunchError("--engine-cmd is empty; it names the engine executable (default: vllm).")
    plan = read_plan(plan_file)
    chosen: Connector = connector or plan.solver.connector
    options = EngineOptions(
        model=model or plan.model_path or plan.model,
        served_name=plan.model,
        engine_cmd=engine_argv,
        connector=chosen,
        api_port=base_port,
        side_channel_port=side_channel_port,
        master_port=master_port,
        extra_args=tuple(engine_arg or ()),
        attention_backend=None if attention_backend == "auto" else attention_backend,
        env=parse_env(env),
    )
    unsafe = input_problems(plan, options)
    if unsafe:
        raise LaunchError(listed(f"{plan_file}: refusing values that would reach the engines' argv or env:", unsafe))
    hop = HopTimeouts(
        connect_s=connect_timeout, first_byte_s=first_byte_timeout, idle_s=idle_timeout, total_s=total_timeout
    )
    router = RouterSettings(
        seed=seed,
        timeouts=Timeouts(prefill=hop, decode=hop),
        limits=Limits(max_attempts=max_attempts, max_concurrent=max_concurrent),
    )
    state_dir = state_dir or st.default_state_dir()
    if model is None and not plan.model_path and "/" not in plan.model:
        report(
            f"vLLM will be asked to load '{plan.model}' (the plan's model name); pass --model with its "
            "Hugging Face id or a local path"
        )
    if dry_run:
        problems = plan_problems(plan, chosen, catalogue_model(plan))
        launches = [] if problems else build_launches(plan, options)
        where = (router_host, router_port)
        doc = dryrun.dry_run_document(plan, plan_file, launches, options, state_dir, where, router, problems)
        print(json.dumps(doc, indent=2, sort_keys=True) if output_format is Format.json else dryrun.render_text(doc))
        if problems:  # the document lists them for tools; the refusal itself goes to stderr, exit 2
            raise LaunchError(listed(f"{plan_file}: a launch would refuse this plan:", problems))
        return
    settings = ray_backend.LaunchSettings(
        state_dir=state_dir,
        plan_file=plan_file,
        address=address,
        router_host=router_host,
        router_port=router_port,
        router=router,
        api_key=api_key,
        skip_node_check=skip_node_check,
        health_timeout_s=health_timeout,
    )
    deployment = ray_backend.launch(plan, options, settings, report)
    console.print(f"[green]serving[/] {plan.model} at {deployment.router_url}/v1 ({len(deployment.replicas)} replicas)")
    console.print(f"state: {st.state_path(state_dir)}; see `hexlaunch status`, stop with `hexlaunch stop`")


@app.command()
def apply(
    plan_file: Annotated[Path, typer.Argument(help="the new plan.yaml (e.g. from `hexplan solve --baseline`)")],
    drain_timeout: Annotated[float, typer.Option(help="seconds to let removed replicas finish their requests")] = 120.0,
    health_timeout: HealthTimeout = 900.0,
    state_dir: StateDirOption = None,
) -> None:
    """Move the running deployment to a new plan: start new replicas first, shift the router, drain the old."""
    from launcher import apply as apply_module
    from launcher.ray_backend import LaunchSettings

    directory = state_dir or st.default_state_dir()
    plan = read_plan(plan_file)
    settings = LaunchSettings(state_dir=directory, plan_file=plan_file, address=None, health_timeout_s=health_timeout)
    change = apply_module.apply(plan, plan_file, directory, settings, report, drain_timeout)
    if change.empty:
        console.print("nothing to change: the running replicas already match the plan")
        return
    console.print(
        f"[green]applied[/] {plan_file}: kept {len(change.kept)}, started "
        f"{len(change.added_now) + len(change.added_later)}, stopped {len(change.removed)} replica(s)"
    )


@app.command()
def status(
    output_format: Annotated[Format, typer.Option("--format", help="table, or JSON for tools")] = Format.text,
    state_dir: StateDirOption = None,
) -> None:
    """Every replica: role, node, GPUs, process state, URL, and the router's view (in rotation or out)."""
    from launcher import observe

    directory = state_dir or st.default_state_dir()
    deployment = st.load(directory)
    rows = observe.status(deployment, directory)
    if output_format is Format.json:
        doc = {"deployment": deployment.deployment, "address": deployment.address, "plan": deployment.plan_file}
        print(json.dumps(doc | {"replicas": [asdict(r) for r in rows]}, indent=2, sort_keys=True))
        return
    table = Table(title=f"deployment {deployment.deployment} on Ray {deployment.address}")
    for column in ("replica", "role", "node", "GPUs", "state", "router", "in flight", "URL"):
        table.add_column(column, no_wrap=column in ("replica", "URL"))
    for row in rows:
        colour = "green" if row.state == "serving" else "yellow" if row.state in ("running", "starting") else "red"
        flight = "" if row.in_flight is None else str(row.in_flight)
        table.add_row(
            row.id, row.role, ",".join(row.nodes), " ".join(row.gpus), f"[{colour}]{row.state}[/]", row.router_view,
            flight, row.url,
        )  # fmt: skip
    print_table(table)


@app.command()
def logs(
    replica: Annotated[str, typer.Argument(help="replica id (see `hexlaunch status`) or `router`")],
    max_bytes: Annotated[int, typer.Option("--bytes", help="how much of the end of each log")] = 20_000,
    state_dir: StateDirOption = None,
) -> None:
    """Print the end of a replica's engine log (each node's, for multi-node replicas)."""
    from launcher import observe

    deployment = st.load(state_dir or st.default_state_dir())
    for name, text in observe.logs(deployment, replica, max_bytes):
        console.rule(name)
        print(text, end="" if text.endswith("\n") else "\n")


@app.command()
def stop(state_dir: StateDirOption = None) -> None:
    """Stop every engine, the router and their placement groups (graceful, then forced); forget the deployment."""
    from launcher import ray_backend

    directory = state_dir or st.default_state_dir()
    deployment = st.load(directory)
    ray_backend.teardown(deployment, directory, report)
    console.print(f"[green]stopped[/] deployment {deployment.deployment}")


@app.command(hidden=True)
def router(
    config: Annotated[Path, typer.Argument(help="router.json written by the launcher")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Run the router in the foreground (the launcher starts it this way)."""
    from launcher.router import serve

    serve(config, host, port)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] not in COMMANDS and not args[0].startswith("-"):
        args.insert(0, "start")
    try:
        app(args=args, prog_name="hexlaunch")
    except PlannerError as exc:  # LaunchError included
        console_err.print(f"[bold red]error:[/] {escape(exc.render())}", soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
