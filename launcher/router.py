"""The OpenAI-compatible front door: prefill on one replica, decode on another, KV handed over by NIXL.

Protocol per request (vLLM's pull-mode disaggregation, as its NIXL proxy example does it):
1. choose a prefill replica and a decode replica (planner.sim.routing, the policy the simulator models);
2. POST the request to the prefill replica with `max_tokens=1`, `stream=false` and
   `kv_transfer_params={"do_remote_decode": true, "do_remote_prefill": false}`;
3. take `kv_transfer_params` from its JSON answer (where the KV blocks are, which engine holds them)
   and POST the *original* request with them to the decode replica, which pulls the KV cache and
   generates; its answer, streamed or not, goes back to the client unchanged.
Both hops carry the same `X-Request-Id`. Colocated replicas get the request directly.

Why aiohttp: one small asyncio dependency is both the server and the streaming client, with no
ASGI server to configure; the router does no CPU work of its own, so one event loop carries
thousands of concurrent streams. Endpoints: /v1/completions, /v1/chat/completions, /v1/models,
/health, /metrics (Prometheus text via prometheus_client). Binds 127.0.0.1 unless told otherwise.
aiohttp and prometheus_client are imported in `serve`/`make_app`, so importing this module is cheap.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from launcher.engine import ReplicaLaunch
from planner.plans.schema import Plan
from planner.sim.routing import PlannedRouting, RouteWeight, RoutingPolicy

PREFILL_KV_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False}
HOP_HEADERS = ("X-Request-Id", "Authorization")


@dataclass(frozen=True)
class Backend:
    """One engine the router can send to."""

    id: str
    role: str  # prefill | decode | colocated
    url: str
    max_outstanding: int


def router_config(plan: Plan, launches: Sequence[ReplicaLaunch], seed: int) -> dict[str, Any]:
    """The JSON document the router process starts from (written to the state directory)."""
    backends = [Backend(lau.replica.id, lau.replica.role, lau.url, lau.replica.engine.max_num_seqs) for lau in launches]
    planned = PlannedRouting.of(plan)
    return {
        "model": plan.model,
        "seed": seed,
        "backends": [asdict(b) for b in backends],
        "routes": [asdict(r) for r in planned.routes],
        "colocated_weights": dict(planned.colocated_weights),
    }


def policy_from(config: Mapping[str, Any]) -> RoutingPolicy:
    return RoutingPolicy(
        {b["id"]: b["max_outstanding"] for b in config["backends"]},
        [RouteWeight(**r) for r in config["routes"]],
        config["colocated_weights"],
        seed=int(config["seed"]),
    )


def openai_error(message: str, status: int, kind: str = "router_error") -> Any:
    from aiohttp import web

    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status)


class Router:
    """Request handlers plus the state they share: policy, in-flight counts, metrics, one HTTP session."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.model = str(config["model"])
        self.policy = policy_from(config)
        self.backends = {b["id"]: Backend(**b) for b in config["backends"]}
        self.outstanding = dict.fromkeys(self.backends, 0)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hexgen2_router_requests", "Requests routed, by pair", ["prefill", "decode"], registry=self.registry
        )
        self.errors = Counter(
            "hexgen2_router_errors",
            "Requests that failed, by replica and hop",
            ["replica", "hop"],
            registry=self.registry,
        )
        self.in_flight = Gauge("hexgen2_router_outstanding", "In-flight requests", ["replica"], registry=self.registry)
        self.latency = Histogram("hexgen2_router_request_seconds", "End-to-end request time", registry=self.registry)
        self.session: Any = None

    async def start(self, _app: Any) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))

    async def close(self, _app: Any) -> None:
        if self.session is not None:
            await self.session.close()

    async def health(self, _request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "ok", "replicas": len(self.backends)})

    async def models(self, _request: Any) -> Any:
        from aiohttp import web

        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "hexgen2"}
        return web.json_response({"object": "list", "data": [model]})

    async def metrics(self, _request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import generate_latest

        return web.Response(body=generate_latest(self.registry), content_type="text/plain", charset="utf-8")

    async def completions(self, request: Any) -> Any:
        return await self.proxy(request, "/v1/completions")

    async def chat_completions(self, request: Any) -> Any:
        return await self.proxy(request, "/v1/chat/completions")

    async def proxy(self, request: Any, path: str) -> Any:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return openai_error("the request body is not JSON", 400, "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error("the request body must be a JSON object", 400, "invalid_request_error")
        headers = {h: request.headers[h] for h in HOP_HEADERS if h in request.headers}
        headers.setdefault("X-Request-Id", uuid.uuid4().hex)
        first, second = self.policy.choose(self.outstanding)
        started = time.perf_counter()
        self.track(first, +1)
        try:
            if second is not None:
                kv_params, failure = await self.prefill(first, path, body, headers)
                if failure is not None:
                    return failure
                body = {**body, "kv_transfer_params": kv_params}
                self.track(second, +1)
                try:
                    return await self.forward(request, second, path, body, headers, first)
                finally:
                    self.track(second, -1)
            return await self.forward(request, first, path, body, headers, first)
        finally:
            self.track(first, -1)
            self.latency.observe(time.perf_counter() - started)

    def track(self, replica: str, delta: int) -> None:
        self.outstanding[replica] += delta
        self.in_flight.labels(replica).set(self.outstanding[replica])

    async def prefill(
        self, replica: str, path: str, body: dict[str, Any], headers: Mapping[str, str]
    ) -> tuple[Any, Any]:
        """Run the prompt on `replica`; (its kv_transfer_params, None) or (None, the error response)."""
        import aiohttp
        from aiohttp import web

        prefill_body = {k: v for k, v in body.items() if k not in ("stream_options", "min_tokens")}
        prefill_body.update(max_tokens=1, stream=False, kv_transfer_params=PREFILL_KV_PARAMS)
        if "max_completion_tokens" in prefill_body:
            prefill_body["max_completion_tokens"] = 1
        url = self.backends[replica].url + path
        try:
            async with self.session.post(url, json=prefill_body, headers=headers) as upstream:
                raw = await upstream.read()
                if upstream.status >= 400:
                    self.errors.labels(replica, "prefill").inc()
                    return None, web.Response(status=upstream.status, body=raw, content_type="application/json")
        except aiohttp.ClientError as exc:
            self.errors.labels(replica, "prefill").inc()
            return None, openai_error(f"prefill replica {replica} at {url} is unreachable: {exc}", 502)
        try:
            kv_params = json.loads(raw).get("kv_transfer_params")
        except (json.JSONDecodeError, AttributeError):
            kv_params = None
        if not kv_params:
            self.errors.labels(replica, "prefill").inc()
            return None, openai_error(
                f"prefill replica {replica} answered without kv_transfer_params (is its KV connector configured?)", 502
            )
        return kv_params, None

    async def forward(
        self, request: Any, replica: str, path: str, body: dict[str, Any], headers: Mapping[str, str], first: str
    ) -> Any:
        """Send `body` to `replica` and relay its answer (chunk by chunk when it streams)."""
        import aiohttp
        from aiohttp import web

        hop = "decode" if replica != first else "direct"
        url = self.backends[replica].url + path
        route = f"{first}->{replica}" if replica != first else first
        response = None
        try:
            async with self.session.post(url, json=body, headers=headers) as upstream:
                if upstream.status >= 400:
                    self.errors.labels(replica, hop).inc()
                else:  # counted before relaying, so a client that has its answer also sees it counted
                    self.requests.labels(first, replica if replica != first else "").inc()
                ctype = upstream.headers.get("Content-Type", "application/json")
                response = web.StreamResponse(status=upstream.status, headers={"Content-Type": ctype})
                response.headers["X-Request-Id"] = headers["X-Request-Id"]
                response.headers["X-Hexgen2-Route"] = route
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
        except aiohttp.ClientError as exc:
            self.errors.labels(replica, hop).inc()
            if response is not None and response.prepared:
                return response  # the stream had started: all that is left is to close it
            return openai_error(f"{hop} replica {replica} at {url} failed: {exc}", 502)
        return response


def make_app(config: Mapping[str, Any]) -> Any:
    from aiohttp import web

    router = Router(config)
    app = web.Application(client_max_size=64 * 2**20)
    app.on_startup.append(router.start)
    app.on_cleanup.append(router.close)
    app.router.add_get("/health", router.health)
    app.router.add_get("/v1/models", router.models)
    app.router.add_get("/metrics", router.metrics)
    app.router.add_post("/v1/completions", router.completions)
    app.router.add_post("/v1/chat/completions", router.chat_completions)
    return app


def serve(config_path: Path, host: str, port: int) -> None:
    """Run the router until SIGTERM/SIGINT (aiohttp's run_app shuts down gracefully on both)."""
    from aiohttp import web

    config = json.loads(config_path.read_text())
    web.run_app(make_app(config), host=host, port=port, access_log=None, print=None)
