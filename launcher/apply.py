"""`hexlaunch apply NEW_PLAN`: move a running deployment to a new plan without dropping a request.

Steps (each recorded in the state file before the next, so `stop` can always clean up):
1. match the running plan's replicas with the new plan's (`planner.plans.diff.match_replicas`, the
   diff's own matching); a matched pair whose launch is identical (role, GPUs, stages, TP/PP, engine
   limits, GPU types) keeps running untouched, everything else is *removed* or *added*;
2. start the added replicas whose GPUs are free now, wait until they are healthy;
3. shift the router to the new plan restricted to what runs (POST /admin/config with the deployment
   secret; router.json is rewritten first, so a router that Ray restarts comes back with it):
   removed replicas get no new requests;
4. drain: wait until the router has no request in flight on a removed replica, then stop them;
5. start the added replicas that needed the removed ones' GPUs, wait, and give the router the whole
   new plan.
A change whose step-3 router would route nothing (every new route needs GPUs the old plan still
holds) is refused before anything starts: it cannot be made without a gap; stop and start instead.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from launcher import state as st
from launcher.errors import LaunchError, listed
from launcher.private import read_secret
from launcher.ray_backend import (
    LaunchSettings,
    arm,
    placed_launches,
    remove_groups,
    start_replicas,
    stop_actors,
    wait_healthy,
)
from launcher.ray_cluster import connect, require_ray
from launcher.router_config import RouterConfig, load_config, plan_config, write_config
from launcher.vllm_args import EngineOptions, Ports, catalogue_model, input_problems, plan_problems
from planner.plans.diff import match_replicas
from planner.plans.schema import Plan, ReplicaPlan, read_plan, write_plan

Report = Callable[[str], None]


@dataclass(frozen=True)
class Change:
    kept: tuple[str, ...]
    removed: tuple[str, ...]
    added_now: tuple[str, ...]  # on GPUs free while the old replicas run
    added_later: tuple[str, ...]  # on GPUs a removed replica holds

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added_now or self.added_later)


def launch_identity(r: ReplicaPlan) -> tuple[object, ...]:
    """What decides how a replica's engines are started: equal identity → the running engines can stay."""
    stages = tuple((tuple(s.gpus), tuple(s.layers)) for s in r.stages)
    return (r.id, r.role, stages, r.tp, r.pp, tuple(r.gpu_types), r.engine)


def plan_change(old: Plan, new: Plan) -> Change:
    """Which replicas stay, go, and come (in two waves), using the diff's replica matching."""
    pairs = match_replicas(old.replicas, new.replicas)
    kept = {
        new.replicas[j].id for i, j in pairs if launch_identity(old.replicas[i]) == launch_identity(new.replicas[j])
    }
    removed = [r for r in old.replicas if r.id not in kept]
    held = {g for r in removed for g in r.gpus}
    added = [r for r in new.replicas if r.id not in kept]
    return Change(
        kept=tuple(sorted(kept)),
        removed=tuple(sorted(r.id for r in removed)),
        added_now=tuple(sorted(r.id for r in added if not held & set(r.gpus))),
        added_later=tuple(sorted(r.id for r in added if held & set(r.gpus))),
    )


def engine_options(state: st.DeploymentState) -> EngineOptions:
    """The options the running engines were started with (lists from JSON back to tuples)."""

    def frozen(value: object) -> object:
        return tuple(frozen(v) for v in value) if isinstance(value, list) else value

    return EngineOptions(**{k: frozen(v) for k, v in state.engine.items()})  # type: ignore[arg-type]


def post_config(router_url: str, secret: str, config: RouterConfig) -> None:
    request = urllib.request.Request(
        router_url + "/admin/config",
        data=config.model_dump_json().encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        raise LaunchError(f"the router at {router_url} did not take the new config: {exc}") from None


def in_flight(router_url: str, secret: str) -> dict[str, int]:
    request = urllib.request.Request(router_url + "/admin/state", headers={"Authorization": f"Bearer {secret}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        replicas = json.loads(response.read())["replicas"]
    return {r: int(v["outstanding"]) for r, v in replicas.items()}


def drain(router_url: str, secret: str, replicas: tuple[str, ...], timeout_s: float, report: Report) -> None:
    """Wait until the router has nothing in flight on `replicas` (they already receive no new requests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = {r: n for r, n in in_flight(router_url, secret).items() if r in replicas and n > 0}
        if not busy:
            return
        if time.monotonic() > deadline:
            report(f"drain: still {sum(busy.values())} request(s) in flight after {timeout_s:g} s; stopping anyway")
            return
        time.sleep(0.2)


def apply(
    new: Plan, plan_file: Path, state_dir: Path, settings: LaunchSettings, report: Report, drain_s: float
) -> Change:
    """Move the deployment in `state_dir` to `new` (steps in the module docstring); return what changed."""
    state = st.load(state_dir)
    old = read_plan(st.running_plan_path(state_dir))
    options = engine_options(state)
    problems = plan_problems(new, options.connector, catalogue_model(new)) + input_problems(new, options)
    if new.model != old.model:
        problems.append(f"the new plan serves {new.model}; the running one serves {old.model} (stop and start).")
    if problems:
        raise LaunchError(listed(f"{plan_file}: the plan cannot be applied; nothing was changed:", problems))
    change = plan_change(old, new)
    if change.empty:
        return change
    urls = {r.id: r.url for r in state.replicas if r.id in change.kept}
    config_path = st.router_config_path(state_dir)
    current = load_config(config_path)
    try:
        plan_config(new, urls | {r: "http://placeholder:1" for r in change.added_now}, current).policy()
    except (ValueError, LaunchError):
        raise LaunchError(
            f"{plan_file}: while the old replicas hand over their GPUs, the new plan would route no traffic "
            f"({', '.join(change.added_later)} need GPUs that {', '.join(change.removed)} still hold).",
            hint="apply it in steps, or `hexlaunch stop` and start the new plan",
        ) from None
    ray = require_ray()
    connect(state.address)
    secret = read_secret(st.engine_secret_path(state_dir))
    assert state.router_url is not None
    urls |= start_wave(new, change.added_now, options, state, state_dir, settings, report, ray)
    shift(state.router_url, secret, config_path, plan_config(new, urls, current), report)
    drain(state.router_url, secret, change.removed, drain_s, report)
    gone = [r for r in state.replicas if r.id in change.removed]
    stop_actors([a for r in gone for a in r.actors], state.namespace, report)
    remove_groups([r.placement_group for r in gone if r.placement_group])
    state.replicas = [r for r in state.replicas if r.id not in change.removed]
    st.save(state_dir, state)
    if change.added_later:
        urls |= start_wave(new, change.added_later, options, state, state_dir, settings, report, ray)
        shift(state.router_url, secret, config_path, plan_config(new, urls, current), report)
    write_plan(new, st.running_plan_path(state_dir))
    state.plan_file = str(plan_file)
    st.save(state_dir, state)
    return change


def start_wave(
    plan: Plan,
    ids: tuple[str, ...],
    options: EngineOptions,
    state: st.DeploymentState,
    state_dir: Path,
    settings: LaunchSettings,
    report: Report,
    ray: object,
) -> dict[str, str]:
    """Start these replicas of `plan` on ports no running replica uses; wait until healthy; arm them."""
    if not ids:
        return {}
    taken = [Ports(**r.ports.model_dump()) for r in state.replicas]
    launches = placed_launches(plan, options, ray, only=set(ids), taken=taken)
    start_replicas(launches, state, state_dir, report, settings.placement_timeout_s)
    urls = {lau.replica.id: lau.url for lau in launches}
    wait_healthy(urls, state, settings, report)
    names = [a for r in state.replicas if r.id in urls for a in r.actors]
    arm(names, state.namespace)
    report(f"started {', '.join(sorted(urls))}")
    return urls


def shift(router_url: str, secret: str, config_path: Path, config: RouterConfig, report: Report) -> None:
    write_config(config_path, config)  # first, so a router Ray restarts comes back with the new weights
    post_config(router_url, secret, config)
    report(f"router: now routing over {', '.join(b.id for b in config.backends)}")
