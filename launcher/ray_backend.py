"""Start, inspect and stop a plan's engines and router on a Ray cluster.

The launcher is a client of an existing Ray cluster (`--address` or RAY_ADDRESS; else it starts a
one-machine head itself), never a scheduler of its own:
- `nodes.match_nodes` checks the cluster holds every node, GPU type and GPU index the plan names and
  lists all that is missing before anything starts;
- each replica gets one detached placement group, one bundle {"GPU": n} per node it spans, each
  bundle pinned by `bundle_label_selector` to the node labelled with the plan's node name;
- each bundle hosts one detached, named `ProcessActor` that runs one engine process (`vllm serve`,
  or the `--engine-cmd` replacement) in its own process group and keeps its log on that node;
- the router runs the same way, pinned to the node `hexlaunch` runs on (it binds 127.0.0.1 there);
- the launch waits for every `/health`, failing fast (with the log's tail) if an engine exits;
- any failure tears down everything started so far. `stop` asks each actor to stop its process
  (SIGTERM to the process group, SIGKILL after a grace period), kills the actors, removes the
  placement groups and, if the launcher started the Ray head, stops it too.
Ray is imported inside the functions, so the CLI and the planner start without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from launcher import state as st
from launcher.engine import EngineOptions, ReplicaLaunch, build_launches, plan_problems
from launcher.errors import LaunchError, listed
from launcher.nodes import GPU_LABEL, NODE_LABEL, match_nodes, needs, ray_nodes
from launcher.router import router_config
from planner.plans.schema import Plan
from planner.yamlio import write_atomic

Report = Callable[[str], None]
STOP_GRACE_S = 20.0


class ProcessActor:
    """Owns one OS process on its node (wrapped by `ray.remote` at launch; plain class so it imports cheaply)."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, list(argv), env
        log_dir = Path(tempfile.gettempdir()) / "hexgen2-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / (name.replace("/", "_") + ".log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.process.pid

    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def state(self) -> str:
        if self.process is None:
            return "not started"
        code = self.process.poll()
        return "running" if code is None else f"exited ({code})"

    def logs(self, max_bytes: int = 20_000) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - max_bytes))
            return log.read().decode("utf-8", "replace")

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace_s`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children the engine left in its group
        return self.process.returncode


@dataclass(frozen=True)
class LaunchSettings:
    state_dir: Path
    plan_file: Path
    address: str | None
    router_host: str = "127.0.0.1"
    router_port: int = 8000
    seed: int = 0
    health_timeout_s: float = 900.0
    placement_timeout_s: float = 60.0


def require_ray() -> ModuleType:
    """Ray comes with the optional `[launch]` extra; without it, say how to get it instead of a traceback."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise LaunchError(
            f"this command needs Ray, which is not installed here ({exc}).", hint="pip install 'hexgen2[launch]'"
        ) from None
    return ray


def connect(address: str | None) -> None:
    """Join the Ray cluster; an unreachable address is a LaunchError (a quick TCP probe first: `ray.init`
    retries an unreachable host:port for minutes before failing)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    hint = "check --address (or RAY_ADDRESS, or the address in the state file) and that Ray runs there"
    host, colon, port = (address or "").removeprefix("ray://").rpartition(":")
    if colon and port.isdigit() and not port_open(host.strip("[]"), int(port), timeout_s=5.0):
        raise LaunchError(f"cannot reach the Ray cluster at {address}: no answer on port {port}.", hint=hint)
    try:
        ray.init(address=address, namespace=st.NAMESPACE, log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise LaunchError(f"cannot reach the Ray cluster at {address or 'auto'}: {exc}", hint=hint) from None


def start_local_ray(plan_nodes: Sequence[tuple[str, str]], state_dir: Path, report: Report) -> tuple[str, int]:
    """A one-machine Ray head labelled as the plan's single node; (address, pid of `ray start --block`)."""
    if len(plan_nodes) != 1:
        names = ", ".join(n for n, _ in plan_nodes)
        raise LaunchError(
            f"no Ray cluster given and the plan spans {len(plan_nodes)} nodes ({names}); a local Ray is one machine.",
            hint="start Ray on every node with the labels in the README and pass --address (or set RAY_ADDRESS)",
        )
    (name, gpu_type), port = plan_nodes[0], free_port()
    ray_exe = Path(sys.executable).with_name("ray")
    argv = [
        str(ray_exe),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--labels={NODE_LABEL}={name},{GPU_LABEL}={gpu_type}",
    ]
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "local-ray.log").open("ab") as log:
        head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    report(f"started a local Ray head (pid {head.pid}, port {port}) labelled {name}/{gpu_type}")
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if head.poll() is not None or time.monotonic() > deadline:
            raise LaunchError(f"the local Ray head did not start; see {state_dir / 'local-ray.log'}.")
        time.sleep(0.5)
    return address, head.pid


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def healthy(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def launch(plan: Plan, options: EngineOptions, settings: LaunchSettings, report: Report) -> st.DeploymentState:
    """Start every replica and the router; return the recorded state (or tear down and raise)."""
    problems = plan_problems(plan, options.connector)
    if problems:
        raise LaunchError(listed(f"{settings.plan_file}: the plan cannot be launched; nothing was started:", problems))
    existing = st.state_path(settings.state_dir)
    if existing.exists():
        raise LaunchError(
            f"{existing}: a deployment is already recorded here.",
            hint="run `hexlaunch stop` first, or pass another --state-dir",
        )
    ray = require_ray()
    address, local_pid = settings.address or os.environ.get("RAY_ADDRESS"), None
    if not address:
        wanted = [(n.node, n.gpu_type) for n in needs(build_launches(plan, options))]
        address, local_pid = start_local_ray(wanted, settings.state_dir, report)
    deployment = st.deployment_name(settings.state_dir)
    state = st.DeploymentState(
        deployment=deployment, address=address, plan_file=str(settings.plan_file), local_ray_pid=local_pid
    )
    st.save(settings.state_dir, state)
    try:
        connect(address)
        matched = match_nodes(needs(build_launches(plan, options)), ray_nodes(ray.nodes()))
        launches = build_launches(plan, options, {name: node.address for name, node in matched.items()})
        start_replicas(launches, state, settings, report)
        start_router(plan, launches, state, settings, report)
        wait_healthy(launches, state, settings, report)
    except BaseException:
        report("launch failed; stopping what was started")
        teardown(state, settings.state_dir, report)
        raise
    return state


def start_replicas(
    launches: Sequence[ReplicaLaunch], state: st.DeploymentState, settings: LaunchSettings, report: Report
) -> None:
    """Reserve every replica's GPUs (all placement groups at once), then start every engine process."""
    ray = require_ray()
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    groups = []
    for launch in launches:
        replica = launch.replica
        pg_name = st.placement_group_name(state.deployment, replica.id)
        state.replicas.append(
            st.ReplicaState(
                id=replica.id,
                role=replica.role,
                url=launch.url,
                nodes=[p.node for p in launch.processes],
                gpus=list(replica.gpus),
                placement_group=pg_name,
            )
        )
        st.save(settings.state_dir, state)
        groups.append(
            placement_group(
                [{"GPU": len(p.gpus)} for p in launch.processes],
                bundle_label_selector=[{NODE_LABEL: p.node} for p in launch.processes],
                name=pg_name,
                lifetime="detached",
            )
        )
    refs = [pg.ready() for pg in groups]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=settings.placement_timeout_s)
    if pending:
        stuck = [
            f"replica {launch.replica.id}: " + ", ".join(f"{len(p.gpus)} GPU(s) on {p.node}" for p in launch.processes)
            for launch, ref in zip(launches, refs, strict=True)
            if ref in pending
        ]
        raise LaunchError(
            listed(f"Ray could not reserve these GPUs within {settings.placement_timeout_s:.0f} s:", stuck),
            hint="are those GPUs used by something else? `ray status` shows what is free",
        )
    remote = ray.remote(ProcessActor)
    started = []
    for launch, pg, record in zip(launches, groups, state.replicas, strict=True):
        for bundle, process in enumerate(launch.processes):
            name = st.engine_actor_name(state.deployment, launch.replica.id, process.node_rank)
            actor = remote.options(
                name=name,
                namespace=st.NAMESPACE,
                lifetime="detached",
                num_cpus=0,
                num_gpus=len(process.gpus),
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle),
            ).remote(name, process.argv, dict(process.env))
            record.actors.append(name)
            started.append((process, actor.start.remote()))
    st.save(settings.state_dir, state)
    for process, pid in started:
        report(f"{process.replica_id} rank {process.node_rank}: started on {process.node} (pid {ray.get(pid)})")


def start_router(
    plan: Plan, launches: Sequence[ReplicaLaunch], state: st.DeploymentState, settings: LaunchSettings, report: Report
) -> None:
    ray = require_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    config_path = settings.state_dir / "router.json"
    write_atomic(config_path, json.dumps(router_config(plan, launches, settings.seed), indent=2, sort_keys=True))
    argv = router_argv(config_path, settings.router_host, settings.router_port)
    name = st.router_actor_name(state.deployment)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = (
        ray.remote(ProcessActor)
        .options(name=name, namespace=st.NAMESPACE, lifetime="detached", num_cpus=0, scheduling_strategy=here)
        .remote(name, argv, {})
    )
    state.router_actor = name
    state.router_url = f"http://{settings.router_host}:{settings.router_port}"
    st.save(settings.state_dir, state)
    pid = ray.get(actor.start.remote())
    report(f"router: started (pid {pid}), will listen on {state.router_url}")


def router_argv(config_path: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launcher.cli",
        "router",
        str(config_path.resolve()),
        "--host",
        host,
        "--port",
        str(port),
    ]


def wait_healthy(
    launches: Sequence[ReplicaLaunch], state: st.DeploymentState, settings: LaunchSettings, report: Report
) -> None:
    """Poll every /health until it answers; raise as soon as an engine process has exited."""
    ray = require_ray()

    waiting = {launch.replica.id: launch.url for launch in launches}
    waiting["router"] = state.router_url or ""
    actors = {r.id: r.actors for r in state.replicas} | {"router": [state.router_actor or ""]}
    deadline = time.monotonic() + settings.health_timeout_s
    while waiting:
        for key, url in list(waiting.items()):
            if healthy(url):
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


def actor_names(state: st.DeploymentState) -> list[str]:
    names = [name for r in state.replicas for name in r.actors]
    return names + ([state.router_actor] if state.router_actor else [])


def teardown(state: st.DeploymentState, state_dir: Path, report: Report) -> None:
    """Stop every recorded process, actor and placement group; stop a Ray head we started; forget the state."""
    ray = require_ray()
    from ray.util import get_placement_group, remove_placement_group

    try:
        connect(state.address)
    except LaunchError as exc:
        if actor_names(state):
            report(f"{exc.message} Not stopped: {', '.join(actor_names(state))}.")
    if ray.is_initialized():
        stopping = []
        for name in actor_names(state):
            try:
                actor = ray.get_actor(name, namespace=state.namespace)
            except ValueError:
                continue
            stopping.append((name, actor, actor.stop.remote()))
        for name, actor, pending in stopping:
            try:
                code = ray.get(pending, timeout=STOP_GRACE_S + 10)
                report(f"{name}: stopped (exit code {code})")
            except ray.exceptions.RayError as exc:
                report(f"{name}: could not be stopped cleanly ({type(exc).__name__})")
            ray.kill(actor)
        for replica in state.replicas:
            if replica.placement_group:
                with contextlib.suppress(Exception):
                    remove_placement_group(get_placement_group(replica.placement_group))
        ray.shutdown()
    if state.local_ray_pid is not None:
        stop_process_group(state.local_ray_pid)
        report(f"local Ray head (pid {state.local_ray_pid}): stopped")
    st.clear(state_dir)
    (state_dir / "router.json").unlink(missing_ok=True)


def stop_process_group(pid: int, grace_s: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class ReplicaStatus:
    id: str
    role: str
    nodes: list[str]
    gpus: list[str]
    state: str
    url: str


def status(state: st.DeploymentState) -> list[ReplicaStatus]:
    """Each replica's (and the router's) process state, refined by a /health probe when running."""
    ray = require_ray()
    connect(state.address)
    rows = [(r.id, r.role, r.nodes, r.gpus, r.actors, r.url) for r in state.replicas]
    if state.router_actor:
        rows.append(("router", "router", [], [], [state.router_actor], state.router_url or ""))
    result = []
    for replica_id, role, nodes, gpus, names, url in rows:
        states = []
        for name in names:
            try:
                states.append(ray.get(ray.get_actor(name, namespace=state.namespace).state.remote(), timeout=10))
            except (ValueError, ray.exceptions.RayError):
                states.append("lost")
        summary = next((s for s in states if s != "running"), "running")
        if summary == "running":
            summary = "serving" if healthy(url) else "starting"
        result.append(ReplicaStatus(replica_id, role, nodes, gpus, summary, url))
    return result


def logs(state: st.DeploymentState, replica_id: str, max_bytes: int) -> list[tuple[str, str]]:
    """(actor name, log tail) for each process of a replica ("router" for the router)."""
    ray = require_ray()
    if replica_id == "router":
        names = [state.router_actor] if state.router_actor else []
    else:
        names = next((r.actors for r in state.replicas if r.id == replica_id), [])
    if not names:
        known = ", ".join([r.id for r in state.replicas] + ["router"])
        raise LaunchError(f"no replica {replica_id} in this deployment.", hint=f"one of: {known}")
    connect(state.address)
    out = []
    for name in names:
        try:
            out.append((name, ray.get(ray.get_actor(name, namespace=state.namespace).logs.remote(max_bytes))))
        except (ValueError, ray.exceptions.RayError) as exc:
            out.append((name, f"<actor unavailable: {type(exc).__name__}>"))
    return out
