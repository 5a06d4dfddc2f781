"""What a running deployment is doing: `hexlaunch status` and `hexlaunch logs`.

Status combines three views: each actor's process state (Ray), each engine's /health, and the router's
own view of each replica (in rotation, out after failed probes, ejected after errors; requests in flight),
read from its /admin/state with the deployment secret.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from launcher import state as st
from launcher.errors import LaunchError
from launcher.private import read_secret
from launcher.ray_cluster import connect, healthy, require_ray


@dataclass(frozen=True)
class ReplicaStatus:
    id: str
    role: str
    nodes: list[str]
    gpus: list[str]
    state: str  # serving | starting | running | exited (N) | lost
    url: str
    router_view: str  # up | down | ejected | removed | "" (router unreachable)
    in_flight: int | None


def router_view(state: st.DeploymentState, state_dir: Path) -> dict[str, dict[str, object]]:
    """The router's /admin/state (replica → health, outstanding); {} when the router does not answer."""
    if not state.router_url:
        return {}
    try:
        secret = read_secret(st.engine_secret_path(state_dir))
    except LaunchError:
        return {}
    request = urllib.request.Request(state.router_url + "/admin/state", headers={"Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return dict(json.loads(response.read()).get("replicas", {}))
    except (urllib.error.URLError, OSError, ValueError):
        return {}


def status(state: st.DeploymentState, state_dir: Path) -> list[ReplicaStatus]:
    """Each replica's (and the router's) process state, refined by a /health probe and the router's view."""
    ray = require_ray()
    connect(state.address)
    rows = [(r.id, r.role, r.nodes, r.gpus, r.actors, r.url) for r in state.replicas]
    if state.router_actor:
        rows.append(("router", "router", [], [], [state.router_actor], state.router_url or ""))
    seen = router_view(state, state_dir)
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
        view = seen.get(replica_id, {})
        in_flight = view.get("outstanding")
        result.append(
            ReplicaStatus(
                replica_id,
                role,
                nodes,
                gpus,
                summary,
                url,
                str(view.get("health", "")),
                int(in_flight) if isinstance(in_flight, int) else None,
            )
        )
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
