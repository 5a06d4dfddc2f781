"""Where a running deployment is written down, so `hexlaunch status/logs/stop` find it from any shell.

One deployment per state directory (`--state-dir`, default `$HEXLAUNCH_STATE_DIR` or
`~/.hexgen2/launch`), created 0700: `state.json` records the Ray address and namespace, the names of
the detached Ray actors that own each engine process and the router, the placement groups holding
their GPUs, each replica's URL and ports, the engine options (for `apply`), and a local Ray head the
launcher started itself (pid + kernel start time, so `stop` never signals a recycled pid). The actors
are the processes' real owners (they live in Ray namespace `hexgen2`, named `<deployment>/<replica>/<rank>`);
the file is only the index that lets a later command reach them. It is written after every step of a
launch, so a launch that fails half-way can still be stopped. Beside it: `plan.yaml` (the plan now
running), `router.json`, the 0600 secrets `engine.secret` (the deployment secret) and `api.key`, and
`logs/` (each process's log and pid record).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from launcher.errors import LaunchError
from planner.yamlio import format_validation_error, read_text, write_atomic

NAMESPACE = "hexgen2"
STATE_FILE = "state.json"


class PortsState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api: int
    side_channel: int
    side_channels: int
    master: int


class ProcessState(BaseModel):
    """A process the launcher started outside Ray's actors (the local Ray head): what proves it is ours."""

    model_config = ConfigDict(extra="forbid")

    pid: int
    start_time: int
    argv0: str


class ReplicaState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    role: str
    url: str
    nodes: list[str]
    gpus: list[str]
    ports: PortsState
    actors: list[str] = []
    placement_group: str | None = None


class DeploymentState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str
    address: str
    namespace: str = NAMESPACE
    plan_file: str
    local_ray: ProcessState | None = None
    engine: dict[str, object] = {}  # the EngineOptions the engines were started with (apply reuses them)
    replicas: list[ReplicaState] = []
    router_url: str | None = None
    router_actor: str | None = None


def default_state_dir() -> Path:
    return Path(os.environ.get("HEXLAUNCH_STATE_DIR") or Path.home() / ".hexgen2" / "launch")


def deployment_name(state_dir: Path) -> str:
    """A short name unique to the state directory, prefixed to every actor and placement group."""
    return "hx-" + hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]


def placement_group_name(deployment: str, replica_id: str) -> str:
    """The one place Ray names are made, so `--dry-run` shows exactly what a launch creates."""
    return f"{deployment}/{replica_id}"


def engine_actor_name(deployment: str, replica_id: str, node_rank: int) -> str:
    return f"{deployment}/{replica_id}/{node_rank}"


def router_actor_name(deployment: str) -> str:
    return f"{deployment}/router"


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def running_plan_path(state_dir: Path) -> Path:
    return state_dir / "plan.yaml"


def router_config_path(state_dir: Path) -> Path:
    return state_dir / "router.json"


def engine_secret_path(state_dir: Path) -> Path:
    return state_dir / "engine.secret"


def api_key_path(state_dir: Path) -> Path:
    return state_dir / "api.key"


def log_dir(state_dir: Path) -> Path:
    return state_dir.resolve() / "logs"


def save(state_dir: Path, state: DeploymentState) -> None:
    write_atomic(state_path(state_dir), state.model_dump_json(indent=2) + "\n")


def load(state_dir: Path) -> DeploymentState:
    """The recorded deployment; a missing or damaged file is a LaunchError naming it (never a traceback)."""
    path = state_path(state_dir)
    if not path.exists():
        raise LaunchError(
            f"{path}: no deployment is recorded here.", hint="start one with `hexlaunch plan.yaml`, or pass --state-dir"
        )
    damaged = (
        f"delete {path} if nothing of this deployment runs any more; otherwise its Ray actors (namespace "
        f"{NAMESPACE}, names starting with {deployment_name(state_dir)}/) run until killed or Ray restarts"
    )
    try:
        data = json.loads(read_text(path, what="deployment state"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise LaunchError(f"{path}: the deployment state is damaged (not JSON: {exc}).", hint=damaged) from None
    try:
        return DeploymentState.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(path, exc, DeploymentState)
        raise LaunchError(f"the deployment state is damaged:\n{message}", hint=damaged) from None


def clear(state_dir: Path) -> None:
    """Forget the deployment: its state, plan, router config and secrets (logs stay for a post-mortem)."""
    for path in (running_plan_path, router_config_path, engine_secret_path, api_key_path, state_path):
        path(state_dir).unlink(missing_ok=True)
