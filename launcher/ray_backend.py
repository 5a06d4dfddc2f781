"""Start, inspect and stop a plan's engines and router on a Ray cluster.

The launcher is a client of an existing Ray cluster (`--address` or RAY_ADDRESS; else it starts a
one-machine head itself, `launcher.ray_cluster`), never a scheduler of its own:
- `nodes.match_nodes` checks the cluster holds every node, GPU type and GPU index the plan names and
  lists all that is missing before anything starts;
- each replica gets one detached placement group, one bundle {"GPU": n} per node it spans, each
  bundle pinned by `bundle_label_selector` to the node labelled with the plan's node name;
- each bundle hosts one detached, named `ProcessActor` (`launcher.process_actor`) that runs one engine
  process in its own process group, created with `max_restarts` so Ray restarts a dead engine;
- the router runs the same way, pinned to the node `hexlaunch` runs on (it binds 127.0.0.1 there);
- a deployment secret (0600 in the state directory) goes to every engine as VLLM_API_KEY and to the
  router, so only the router reaches the engines; `--api-key` guards the router itself;
- the launch waits for every `/health`, failing fast (with the log's tail) if an engine exits, then
  arms the actors (from then on an exit means a restart);
- any failure tears down everything started so far. `stop` asks each actor to stop its process
  (SIGTERM to the process group, SIGKILL after a grace period), kills the actors, removes the
  placement groups and, if the launcher started the Ray head, stops it — only if pid and start time
  still match what was recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from launcher import state as st
from launcher.errors import LaunchError, listed
from launcher.node_check import check_nodes
from launcher.nodes import NODE_LABEL, match_nodes, needs, ray_nodes
from launcher.private import new_secret, private_dir, read_secret, write_secret
from launcher.process_actor import STOP_GRACE_S, ProcessActor, stop_group
from launcher.ray_cluster import connect, healthy, proven, require_ray, start_local_ray
from launcher.router_config import RouterSettings, plan_config, router_argv, write_config
from launcher.vllm_args import (
    SECRET_ENV,
    EngineOptions,
    Ports,
    ReplicaLaunch,
    build_launches,
    catalogue_model,
    plan_problems,
)
from planner.plans.schema import Plan, write_plan

Report = Callable[[str], None]
MAX_RESTARTS = 10  # per actor; Ray restarts a dead engine this many times before giving up on it


@dataclass(frozen=True)
class LaunchSettings:
    state_dir: Path
    plan_file: Path
    address: str | None
    router_host: str = "127.0.0.1"
    router_port: int = 8000
    router: RouterSettings = field(default_factory=RouterSettings)  # seed, timeouts, health, limits
    api_key: str | None = None
    skip_node_check: bool = False
    health_timeout_s: float = 900.0
    placement_timeout_s: float = 60.0


def launch(plan: Plan, options: EngineOptions, settings: LaunchSettings, report: Report) -> st.DeploymentState:
    """Start every replica and the router; return the recorded state (or tear down and raise)."""
    problems = plan_problems(plan, options.connector, catalogue_model(plan))
    if problems:
        raise LaunchError(listed(f"{settings.plan_file}: the plan cannot be launched; nothing was started:", problems))
    state_dir = private_dir(settings.state_dir)
    existing = st.state_path(state_dir)
    if existing.exists():
        raise LaunchError(
            f"{existing}: a deployment is already recorded here.",
            hint="run `hexlaunch stop` first, or pass another --state-dir",
        )
    ray = require_ray()
    address, local = settings.address, None
    if not address:
        wanted = [(n.node, n.gpu_type) for n in needs(build_launches(plan, options))]
        address, local = start_local_ray(wanted, state_dir, report)
    state = st.DeploymentState(
        deployment=st.deployment_name(state_dir),
        address=address,
        plan_file=str(settings.plan_file),
        local_ray=local,
        engine=engine_record(options),
    )
    st.save(state_dir, state)
    try:
        write_secret(st.engine_secret_path(state_dir), new_secret())
        if settings.api_key:
            write_secret(st.api_key_path(state_dir), settings.api_key)
        write_plan(plan, st.running_plan_path(state_dir))
        connect(address)
        launches = placed_launches(plan, options, ray, check_software=not settings.skip_node_check)
        start_replicas(launches, state, state_dir, report, settings.placement_timeout_s)
        start_router(plan, launches, state, settings, report)
        wait_healthy(
            {lau.replica.id: lau.url for lau in launches} | {"router": state.router_url or ""}, state, settings
        )
        arm(actor_names(state), state.namespace)
    except BaseException:
        report("launch failed; stopping what was started")
        teardown(state, state_dir, report)
        raise
    return state


def engine_record(options: EngineOptions) -> dict[str, object]:
    """EngineOptions as JSON for the state file (`apply` starts new replicas with the same options)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}


def placed_launches(
    plan: Plan,
    options: EngineOptions,
    ray: object,
    only: set[str] | None = None,
    taken: Sequence[Ports] = (),
    check_software: bool = True,
) -> list[ReplicaLaunch]:
    """The launches with each plan node's Ray address as its host (LaunchError when a node is missing, or
    runs another vLLM/NIXL than pinned — checked when the engine is vLLM itself and `check_software`)."""
    matched = match_nodes(needs(build_launches(plan, options, only=only, taken=taken)), ray_nodes(ray.nodes()))
    if check_software and options.engine_cmd == ("vllm",):
        check_nodes({name: node.node_id for name, node in matched.items()}, options.connector)
    hosts = {name: node.address for name, node in matched.items()}
    return build_launches(plan, options, hosts, only=only, taken=taken)


def start_replicas(
    launches: Sequence[ReplicaLaunch], state: st.DeploymentState, state_dir: Path, report: Report, timeout_s: float
) -> None:
    """Reserve every replica's GPUs (all placement groups at once), then start every engine process."""
    ray = require_ray()
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    groups, records = [], []
    for launch in launches:
        replica = launch.replica
        pg_name = st.placement_group_name(state.deployment, replica.id)
        record = st.ReplicaState(
            id=replica.id,
            role=replica.role,
            url=launch.url,
            nodes=[p.node for p in launch.processes],
            gpus=list(replica.gpus),
            ports=st.PortsState(**asdict(launch.ports)),
            placement_group=pg_name,
        )
        state.replicas.append(record)
        records.append(record)
        st.save(state_dir, state)
        groups.append(
            placement_group(
                [{"GPU": len(p.gpus)} for p in launch.processes],
                bundle_label_selector=[{NODE_LABEL: p.node} for p in launch.processes],
                name=pg_name,
                lifetime="detached",
            )
        )
    wait_placed(launches, groups, timeout_s)
    secret = read_secret(st.engine_secret_path(state_dir))
    remote = ray.remote(ProcessActor)
    started = []
    for launch, pg, record in zip(launches, groups, records, strict=True):
        for bundle, process in enumerate(launch.processes):
            name = st.engine_actor_name(state.deployment, launch.replica.id, process.node_rank)
            actor = remote.options(
                name=name,
                namespace=st.NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                num_gpus=len(process.gpus),
                max_restarts=MAX_RESTARTS,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle),
            ).remote(name, process.argv, {**process.env, SECRET_ENV: secret}, str(st.log_dir(state_dir)))
            record.actors.append(name)
            started.append((process, actor.start.remote()))
    st.save(state_dir, state)
    for process, pid in started:
        report(f"{process.replica_id} rank {process.node_rank}: started on {process.node} (pid {ray.get(pid)})")


def wait_placed(launches: Sequence[ReplicaLaunch], groups: Sequence[object], timeout_s: float) -> None:
    ray = require_ray()
    refs = [pg.ready() for pg in groups]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        stuck = [
            f"replica {launch.replica.id}: " + ", ".join(f"{len(p.gpus)} GPU(s) on {p.node}" for p in launch.processes)
            for launch, ref in zip(launches, refs, strict=True)
            if ref in pending
        ]
        raise LaunchError(
            listed(f"Ray could not reserve these GPUs within {timeout_s:.0f} s:", stuck),
            hint="are those GPUs used by something else? `ray status` shows what is free",
        )


def start_router(
    plan: Plan, launches: Sequence[ReplicaLaunch], state: st.DeploymentState, settings: LaunchSettings, report: Report
) -> None:
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    state_dir = settings.state_dir
    files = {
        "engine_key_file": st.engine_secret_path(state_dir).resolve(),
        "api_key_file": st.api_key_path(state_dir).resolve() if settings.api_key else None,
    }
    base = settings.router.model_copy(update=files)
    config = plan_config(plan, {lau.replica.id: lau.url for lau in launches}, base)
    config_path = st.router_config_path(state_dir)
    write_config(config_path, config)
    argv = router_argv(config_path, settings.router_host, settings.router_port)
    name = st.router_actor_name(state.deployment)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = (
        ray.remote(ProcessActor)
        .options(
            name=name,
            namespace=st.NAMESPACE,
            lifetime="detached",
            num_cpus=0,
            max_restarts=MAX_RESTARTS,
            scheduling_strategy=here,
        )
        .remote(name, argv, {}, str(st.log_dir(state_dir)))
    )
    state.router_actor = name
    state.router_url = f"http://{settings.router_host}:{settings.router_port}"
    st.save(state_dir, state)
    pid = ray.get(actor.start.remote())
    report(f"router: started (pid {pid}), will listen on {state.router_url}")


def wait_healthy(
    urls: Mapping[str, str], state: st.DeploymentState, settings: LaunchSettings, report: Report | None = None
) -> None:
    """Poll until every engine and the router answer as ours (the deployment secret opens an engine's /v1/models
    and the router's /admin/state; a stranger on the port does not); raise as soon as a process has exited."""
    ray = require_ray()
    secret = read_secret(st.engine_secret_path(settings.state_dir))
    waiting = dict(urls)
    actors = {r.id: r.actors for r in state.replicas} | {"router": [state.router_actor or ""]}
    deadline = time.monotonic() + settings.health_timeout_s
    while waiting:
        for key, url in list(waiting.items()):
            if healthy(url, secret=secret, path="/admin/state" if key == "router" else "/v1/models"):
                if report:
                    report(f"{key}: healthy at {url}")
                del waiting[key]
                continue
            for name in actors[key]:
                actor = ray.get_actor(name, namespace=st.NAMESPACE)
                process_state = ray.get(actor.state.remote())
                if process_state != "running":
                    tail = ray.get(actor.logs.remote(4000)).strip().splitlines()[-15:]
                    raise LaunchError(
                        f"{name}: the process {process_state} before becoming healthy. Last log lines:\n"
                        + "\n".join("    " + line for line in tail)
                    )
        if waiting and time.monotonic() > deadline:
            raise LaunchError(
                f"not healthy after {settings.health_timeout_s:.0f} s: {', '.join(sorted(waiting))}.",
                hint="see `hexlaunch logs REPLICA`; raise --health-timeout for large models",
            )
        if waiting:
            time.sleep(0.5)


def arm(names: Sequence[str], namespace: str) -> None:
    """Tell each actor its process is healthy: from now on an exit restarts it."""
    ray = require_ray()
    ray.get([ray.get_actor(name, namespace=namespace).arm.remote() for name in names])


def actor_names(state: st.DeploymentState) -> list[str]:
    names = [name for r in state.replicas for name in r.actors]
    return names + ([state.router_actor] if state.router_actor else [])


def stop_actors(names: Sequence[str], namespace: str, report: Report) -> None:
    """Stop each actor's process (graceful, then forced), then kill the actor for good (no restart)."""
    ray = require_ray()
    stopping = []
    for name in names:
        try:
            actor = ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue
        stopping.append((name, actor, actor.stop.remote()))
    for name, actor, pending in stopping:
        try:
            code = ray.get(pending, timeout=STOP_GRACE_S + 10)
            report(f"{name}: stopped (exit code {code})")
        except ray.exceptions.RayError as exc:
            report(f"{name}: could not be stopped cleanly ({type(exc).__name__})")
        ray.kill(actor, no_restart=True)


def remove_groups(names: Sequence[str]) -> None:
    from ray.util import get_placement_group, remove_placement_group

    for name in names:
        with contextlib.suppress(Exception):
            remove_placement_group(get_placement_group(name))


def teardown(state: st.DeploymentState, state_dir: Path, report: Report) -> None:
    """Stop every recorded process, actor and placement group; stop a Ray head we started; forget the state."""
    ray = require_ray()
    try:
        connect(state.address)
    except LaunchError as exc:
        if actor_names(state):
            report(f"{exc.message} Not stopped: {', '.join(actor_names(state))}.")
    if ray.is_initialized():
        stop_actors(actor_names(state), state.namespace, report)
        remove_groups([r.placement_group for r in state.replicas if r.placement_group])
        ray.shutdown()
    if state.local_ray is not None:
        if stop_group(proven(state.local_ray), grace_s=10.0):
            report(f"local Ray head (pid {state.local_ray.pid}): stopped")
        else:
            report(f"local Ray head (pid {state.local_ray.pid}): no longer running (not signalled)")
    st.clear(state_dir)
