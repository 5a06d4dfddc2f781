"""The router's config file: a strict, versioned pydantic schema, and how the launcher builds and starts it.

Why a schema: the router is a separate process that trusts this file for every request (where the engines
are, how much traffic each pair gets, how long to wait), and the launcher rewrites it live
(`hexlaunch apply`, via the router's admin endpoint). A wrong field must stop the router at start with
one line naming it (exit 2), not surface as a KeyError on the first request.

Secrets never sit in this file (it is readable by whoever can read the state directory listing):
`api_key_file` and `engine_key_file` name 0600 files beside it (see `launcher.secrets`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from launcher.errors import LaunchError
from planner.plans.schema import Plan
from planner.scheduler.launchability import route_roles_problem
from planner.sim.routing import PlannedRouting, RouteWeight, RoutingPolicy
from planner.yamlio import format_validation_error, write_atomic

SCHEMA_VERSION = 1
MAX_CONFIG_BYTES = 4 * 2**20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HopTimeouts(_Strict):
    """Per-hop limits (seconds). first_byte: until the response starts (for a non-streamed decode, that is the
    whole generation); idle: the longest silence between two chunks of a streamed answer; total: the whole hop."""

    connect_s: float = Field(2.0, gt=0)
    first_byte_s: float = Field(300.0, gt=0)
    idle_s: float = Field(60.0, gt=0)
    total_s: float = Field(900.0, gt=0)


class Timeouts(_Strict):
    prefill: HopTimeouts = HopTimeouts()
    decode: HopTimeouts = HopTimeouts()


class HealthPolicy(_Strict):
    """Active probes of every engine's /health plus passive outlier ejection on request errors."""

    interval_s: float = Field(1.0, gt=0, description="between two probes of one engine")
    probe_timeout_s: float = Field(1.0, gt=0)
    unhealthy_after: int = Field(2, ge=1, description="failed probes in a row that take a replica out")
    healthy_after: int = Field(1, ge=1, description="good probes in a row that bring it back")
    eject_after: int = Field(3, ge=1, description="request errors in a row (5xx, timeout, refused) that eject it")
    ejection_s: float = Field(5.0, gt=0, description="first ejection; doubles per ejection in a row")
    max_ejection_s: float = Field(60.0, gt=0)


class Limits(_Strict):
    max_body_bytes: int = Field(16 * 2**20, gt=0)
    max_concurrent: int = Field(4096, gt=0, description="requests in flight; beyond it the router answers 429")
    max_attempts: int = Field(3, ge=1, description="tries per request, each on other replicas than the failed ones")


class BackendConfig(_Strict):
    id: str = Field(min_length=1)
    role: Literal["prefill", "decode", "colocated"]
    url: str = Field(pattern=r"^https?://[^\s/]+$")
    max_outstanding: int = Field(gt=0)


class RouteConfig(_Strict):
    source: str
    target: str
    weight: float = Field(ge=0)


class RouterSettings(_Strict):
    """How the router behaves, whatever the plan: what `hexlaunch start` flags set."""

    seed: int = Field(0, ge=0)
    timeouts: Timeouts = Timeouts()
    health: HealthPolicy = HealthPolicy()
    limits: Limits = Limits()
    api_key_file: Path | None = Field(None, description="clients must send `Authorization: Bearer <its content>`")
    engine_key_file: Path | None = Field(None, description="the deployment secret the engines require")


class RouterConfig(RouterSettings):
    """The whole file: the settings plus the plan's engines and traffic weights."""

    schema_version: Literal[1] = SCHEMA_VERSION
    model: str = Field(min_length=1)
    backends: list[BackendConfig] = Field(min_length=1)
    routes: list[RouteConfig] = []
    colocated_weights: dict[str, float] = {}

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
        roles = {b.id: b.role for b in self.backends}
        if len(roles) != len(self.backends):
            raise ValueError("backends: two backends share an id")
        for i, route in enumerate(self.routes):
            if (problem := route_roles_problem(roles.get(route.source), roles.get(route.target))) is not None:
                raise ValueError(f"routes[{i}]: {route.source} → {route.target} {problem.rstrip('.')}")
        for name in self.colocated_weights:
            if roles.get(name) != "colocated":
                raise ValueError(f"colocated_weights: {name} is not a colocated backend")
        return self

    def policy(self) -> RoutingPolicy:
        """The routing policy this config describes (raises ValueError if it routes no traffic)."""
        return RoutingPolicy(
            {b.id: b.max_outstanding for b in self.backends},
            [RouteWeight(r.source, r.target, r.weight) for r in self.routes],
            self.colocated_weights,
            seed=self.seed,
        )


def parse_config(raw: bytes | str, where: Path) -> RouterConfig:
    """Validate a config document; LaunchError naming the file and field (also when it routes nothing)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise LaunchError(f"{where}: the router config is not JSON ({exc}).") from None
    try:
        config = RouterConfig.model_validate(data)
    except ValidationError as exc:
        message = format_validation_error(where, exc, RouterConfig)
        raise LaunchError("the router config is invalid:\n" + message) from None
    try:
        config.policy()
    except ValueError as exc:
        raise LaunchError(f"{where}: {exc}.") from None
    return config


def load_config(path: Path) -> RouterConfig:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise LaunchError(f"{path}: the router config is larger than {MAX_CONFIG_BYTES} bytes.")
        raw = path.read_bytes()
    except OSError as exc:
        raise LaunchError(f"{path}: cannot read the router config ({exc.strerror}).") from None
    return parse_config(raw, path)


def router_argv(config_path: Path, host: str, port: int) -> list[str]:
    """How the launcher runs the router: this Python, the hidden `hexlaunch router` command."""
    config = str(config_path.resolve())
    return [sys.executable, "-m", "launcher.cli", "router", config, "--host", host, "--port", str(port)]


def plan_config(plan: Plan, urls: Mapping[str, str], settings: RouterSettings | None = None) -> RouterConfig:
    """The router config for `plan`'s replicas that are in `urls` (replica id → engine URL): its routes
    between those replicas weighted by rate_rps, its colocated replicas by capacity, each engine's limit
    its max_num_seqs (planner.sim.routing.PlannedRouting, the reading the simulator shares). Everything
    else (seed, timeouts, health, limits, key files) comes from `settings`. Serving only some replicas is
    how `hexlaunch apply` shifts traffic while a plan changes."""
    planned = PlannedRouting.of(plan)
    backends = [
        BackendConfig(id=r.id, role=r.role, url=urls[r.id], max_outstanding=planned.limits[r.id])
        for r in plan.replicas
        if r.id in urls
    ]
    routes = [
        RouteConfig(source=r.source, target=r.target, weight=r.weight)
        for r in planned.routes
        if r.source in urls and r.target in urls
    ]
    colocated = {k: w for k, w in planned.colocated_weights.items() if k in urls}
    base = settings.model_dump(include=set(RouterSettings.model_fields)) if settings else {}
    update = {"model": plan.model, "backends": backends, "routes": routes, "colocated_weights": colocated}
    return RouterConfig.model_validate(base | update)


def write_config(path: Path, config: RouterConfig) -> None:
    write_atomic(path, config.model_dump_json(indent=2) + "\n")
