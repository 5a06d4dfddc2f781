"""Where a running deployment is written down, so `hexlaunch status/logs/stop` find it from any shell.

One deployment per state directory (`--state-dir`, default `$HEXLAUNCH_STATE_DIR` or
`~/.hexgen2/launch`): `state.json` records the Ray address and namespace, the names of the detached
Ray actors that own each engine process and the router, the placement groups holding their GPUs, each
replica's URL, and the pid of a local Ray head the launcher started itself (if any). The actors are
the processes' real owners (they live in Ray namespace `hexgen2`, named `<deployment>/<replica>/<rank>`);
the file is only the index that lets a later command reach them. It is written after every step of a
launch, so a launch that fails half-way can still be stopped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from launcher.errors import LaunchError

NAMESPACE = "hexgen2"
STATE_FILE = "state.json"


class ReplicaState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    role: str
    url: str
    nodes: list[str]
    gpus: list[str]
    actors: list[str] = []
    placement_group: str | None = None


class DeploymentState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deployment: str
    address: str
    namespace: str = NAMESPACE
    plan_file: str
    local_ray_pid: int | None = None
    replicas: list[ReplicaState] = []
    router_url: str | None = None
    router_actor: str | None = None


def default_state_dir() -> Path:
    return Path(os.environ.get("HEXLAUNCH_STATE_DIR") or Path.home() / ".hexgen2" / "launch")


def deployment_name(state_dir: Path) -> str:
    """A short name unique to the state directory, prefixed to every actor and placement group."""
    return "hx-" + hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]


def state_path(state_dir: Path) -> Path:
    return state_dir / STATE_FILE


def save(state_dir: Path, state: DeploymentState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path(state_dir).with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    tmp.replace(state_path(state_dir))


def load(state_dir: Path) -> DeploymentState:
    path = state_path(state_dir)
    if not path.exists():
        raise LaunchError(
            f"{path}: no deployment is recorded here.", hint="start one with `hexlaunch plan.yaml`, or pass --state-dir"
        )
    return DeploymentState.model_validate_json(path.read_text())


def clear(state_dir: Path) -> None:
    state_path(state_dir).unlink(missing_ok=True)
