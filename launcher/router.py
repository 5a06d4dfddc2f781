"""The OpenAI-compatible front door: prefill on one replica, decode on another, KV handed over by the connector.

Protocol per request (vLLM's pull-mode disaggregation, as its NIXL proxy example does it):
1. choose a prefill and a decode replica (`planner.sim.routing`, the policy the simulator models too),
   skipping those the health book has out;
2. POST the request to the prefill with `max_tokens=1`, `stream=false` and
   `kv_transfer_params={"do_remote_decode": true, "do_remote_prefill": false}`;
3. POST the *original* request plus the prefill's `kv_transfer_params` to the decode, which pulls the KV
   cache and generates; its answer, streamed or not, goes back to the client.
Both hops carry the same `X-Request-Id`. Colocated replicas get the request directly.

Failover: a hop that fails before the client saw a byte (`relay.HopError`: refused, timed out, 5xx, a
broken or empty answer) is retried on other replicas, up to `limits.max_attempts` tries. After a decode
failure the prefill is redone unless the decode was never reached (refused connection), in which case the
prefill's KV is still there and the same `kv_transfer_params` go to another decode. Every failure counts
against its replica (`launcher.health`): enough in a row eject it; probes of /health bring it back.

Doors: `Authorization: Bearer <api key>` when the config names an api_key_file (constant-time compare; the
client's header is never forwarded); the engines get the deployment secret instead. Bodies over
`max_body_bytes` → 413, more than `max_concurrent` in flight → 429, anything but a JSON object → 400.
`/admin/config` (POST a new config) and `/admin/state` take the deployment secret (`hexlaunch apply`).

Why aiohttp: one small asyncio dependency is both the server and the streaming client, with no ASGI
server to configure; the router does no CPU work of its own, so one event loop carries thousands of
concurrent streams. One ClientSession with a pooled connector serves every hop.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from yarl import URL

from launcher.errors import LaunchError
from launcher.health import HealthBook
from launcher.private import read_secret
from launcher.relay import EngineAnswer, HopError, Target, prefill_body, prefill_hop, relay_hop, with_kv_params
from launcher.router_config import RouterConfig, load_config, parse_config

REQUEST_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
ROUTES = {"/v1/completions", "/v1/chat/completions"}


def openai_error(message: str, status: int, kind: str = "router_error", **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status, headers=headers or None)


class Metrics:
    """The router's Prometheus series; label children are cached so a request costs dict lookups, not locks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hexgen2_router_requests", "Requests answered, by pair", ["prefill", "decode"], registry=r
        )
        self.errors = Counter(
            "hexgen2_router_errors", "Failed hops, by replica and hop", ["replica", "hop"], registry=r
        )
        self.timeouts = Counter("hexgen2_router_timeouts", "Hops that timed out", ["replica", "hop"], registry=r)
        self.retries = Counter("hexgen2_router_retries", "Requests tried again, by failed hop", ["hop"], registry=r)
        self.ejections = Counter("hexgen2_router_ejections", "Replicas ejected after errors", ["replica"], registry=r)
        self.cuts = Counter("hexgen2_router_stream_cuts", "Streams cut after the answer began", ["replica"], registry=r)
        self.failed = Counter("hexgen2_router_failed", "Requests that failed after every try", ["status"], registry=r)
        self.rejected = Counter("hexgen2_router_rejected", "Requests refused at the door", ["reason"], registry=r)
        self.outstanding = Gauge("hexgen2_router_outstanding", "In-flight hops", ["replica"], registry=r)
        self.up = Gauge("hexgen2_router_replica_up", "1 if the replica is in the rotation", ["replica"], registry=r)
        self.latency = Histogram("hexgen2_router_request_seconds", "End-to-end request time", registry=r)
        self._children: dict[tuple[str, ...], Any] = {}

    def inc(self, counter: Counter, *labels: str) -> None:
        key = (counter._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        child.inc()


class Router:
    """Request handlers plus what they share: config, policy, health, in-flight counts, metrics, one session."""

    def __init__(self, config: RouterConfig, api_key: str | None, engine_key: str | None) -> None:
        self.api_auth = f"Bearer {api_key}".encode() if api_key else None
        self.admin_auth = f"Bearer {engine_key}".encode() if engine_key else None
        self.engine_headers = {"Content-Type": "application/json"}
        if engine_key:
            self.engine_headers["Authorization"] = f"Bearer {engine_key}"
        self.metrics = Metrics()
        self.outstanding: dict[str, int] = {}
        self.health = HealthBook((), config.health)
        self.active = 0
        self.ids = (f"{self.id_prefix}-{n}" for n in itertools.count())
        self.session: aiohttp.ClientSession | None = None
        self.prober: asyncio.Task[None] | None = None
        self.use(config)

    id_prefix = secrets.token_hex(6)  # request ids: this prefix and a counter (unique, and cheaper than uuid4)

    def use(self, config: RouterConfig) -> None:
        """Switch to `config` at once (a new plan): new policy, backends, limits; in-flight hops finish as they are."""
        self.policy = config.policy()
        self.config = config
        self.backends = {b.id: b for b in config.backends}
        self.targets = {
            (b.id, path, hop): Target(b.id, URL(b.url + path), hop, getattr(config.timeouts, timeouts))
            for b in config.backends
            for path in ROUTES
            for hop, timeouts in (("prefill", "prefill"), ("decode", "decode"), ("direct", "decode"))
        }
        self.health.policy = config.health
        self.health.track(self.backends)
        for replica in self.backends:
            if replica not in self.outstanding:
                self.outstanding[replica] = 0
                self.metrics.outstanding.labels(replica).set_function(lambda r=replica: self.outstanding.get(r, 0))
                self.metrics.up.labels(replica).set_function(lambda r=replica: float(r not in self.health.down))

    # --- lifecycle ---------------------------------------------------------------------------------------------
    async def start(self, _app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeouts.decode.connect_s)
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),  # identity answers: relayed as they come
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self.prober = asyncio.create_task(self.probe_forever())

    async def close(self, _app: web.Application) -> None:
        if self.prober is not None:
            self.prober.cancel()
        if self.session is not None:
            await self.session.close()

    async def probe_forever(self) -> None:
        while True:
            await asyncio.gather(*(self.probe(b.id, b.url) for b in list(self.backends.values())))
            await asyncio.sleep(self.config.health.interval_s)

    async def probe(self, replica: str, url: str) -> None:
        assert self.session is not None
        timeout = aiohttp.ClientTimeout(total=self.config.health.probe_timeout_s)
        try:
            async with self.session.get(url + "/health", timeout=timeout, headers=self.engine_headers) as answer:
                await answer.read()
                ok = answer.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            ok = False
        self.health.probed(replica, ok, time.monotonic())

    # --- small endpoints ---------------------------------------------------------------------------------------
    async def health_page(self, _request: web.Request) -> web.Response:
        """200 "ok" when every replica is in, 200 "degraded" when some are out but traffic still has a path,
        503 "unavailable" when it has none."""
        states = self.health.summary()
        down = {r: s for r, s in states.items() if s != "up"}
        firsts = [b for b in self.backends.values() if b.role in ("prefill", "colocated")]
        servable = any(b.id not in down for b in firsts) and (
            any(b.role == "colocated" and b.id not in down for b in firsts)
            or any(b.role == "decode" and b.id not in down for b in self.backends.values())
        )
        status = "ok" if not down else "degraded" if servable else "unavailable"
        body = {"status": status, "replicas": len(states), "out": down}
        return web.json_response(body, status=200 if servable else 503)

    async def models(self, request: web.Request) -> web.Response:
        if not self.authorized(request, self.api_auth):
            return self.unauthorized()
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "hexgen2"}
        return web.json_response({"object": "list", "data": [model]})

    async def metrics_page(self, request: web.Request) -> web.Response:
        if not self.authorized(request, self.api_auth):
            return self.unauthorized()
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def admin_state(self, request: web.Request) -> web.Response:
        if self.admin_auth is None or not self.authorized(request, self.admin_auth):
            return self.unauthorized()
        replicas = {
            r: {"outstanding": self.outstanding.get(r, 0), "health": self.health.summary().get(r, "removed")}
            for r in sorted(self.outstanding)
        }
        return web.json_response({"active": self.active, "replicas": replicas, "backends": sorted(self.backends)})

    async def admin_config(self, request: web.Request) -> web.Response:
        if self.admin_auth is None or not self.authorized(request, self.admin_auth):
            return self.unauthorized()
        try:
            config = parse_config(await request.read(), Path("<POST /admin/config>"))
        except LaunchError as exc:
            return openai_error(exc.message, 400, "invalid_request_error")
        self.use(config)
        return web.json_response({"backends": sorted(self.backends)})

    # --- the proxy ---------------------------------------------------------------------------------------------
    @staticmethod
    def authorized(request: web.Request, expected: bytes | None) -> bool:
        if expected is None:
            return True
        return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)

    def unauthorized(self) -> web.Response:
        self.metrics.inc(self.metrics.rejected, "unauthorized")
        return openai_error("missing or wrong API key", 401, "authentication_error", **{"WWW-Authenticate": "Bearer"})

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        if not self.authorized(request, self.api_auth):
            return self.unauthorized()
        if self.active >= self.config.limits.max_concurrent:
            self.metrics.inc(self.metrics.rejected, "busy")
            return openai_error(
                "too many requests in flight; retry later", 429, "rate_limit_error", **{"Retry-After": "1"}
            )
        self.active += 1
        started = time.perf_counter()
        try:
            return await self.answer(request)
        finally:
            self.active -= 1
            self.metrics.latency.observe(time.perf_counter() - started)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.inc(self.metrics.rejected, "too_large")
            limit = self.config.limits.max_body_bytes
            return openai_error(f"the request body is larger than {limit} bytes", 413, "invalid_request_error")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            self.metrics.inc(self.metrics.rejected, "bad_request")
            return openai_error("the request body is not JSON", 400, "invalid_request_error")
        if not isinstance(body, dict):
            self.metrics.inc(self.metrics.rejected, "bad_request")
            return openai_error("the request body must be a JSON object", 400, "invalid_request_error")
        given = request.headers.get("X-Request-Id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else next(self.ids)
        return await Exchange(self, request, raw, body, request_id).run()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.limits.max_body_bytes)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.close)
        app.router.add_get("/health", self.health_page)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/metrics", self.metrics_page)
        for path in sorted(ROUTES):
            app.router.add_post(path, self.proxy)
        app.router.add_get("/admin/state", self.admin_state)
        app.router.add_post("/admin/config", self.admin_config)
        return app


class Exchange:
    """One client request through its tries: choose, prefill, decode; on a HopError, avoid that replica and retry."""

    def __init__(self, router: Router, request: web.Request, raw: bytes, body: dict[str, Any], request_id: str):
        self.router, self.request, self.raw, self.body = router, request, raw, body
        self.path = request.path
        self.stream = body.get("stream") is True
        self.headers = {**router.engine_headers, "X-Request-Id": request_id}
        self.request_id = request_id
        self.targets: dict[tuple[str, str, str], Target]  # the engines of the current try (run sets them)

    async def run(self) -> web.StreamResponse:
        router = self.router
        avoid: set[str] = set()
        kv: tuple[str, object] | None = None  # (prefill replica, its kv_transfer_params) still usable
        last: HopError | None = None
        for _ in range(router.config.limits.max_attempts):
            first, second = router.policy.choose(router.outstanding, router.health.down | avoid)
            if first in avoid or second in avoid:
                break  # every candidate already failed this request
            self.targets = router.targets  # this attempt's engines, even if a new config arrives meanwhile
            if last is not None:  # a try after a failed one
                router.metrics.inc(router.metrics.retries, last.hop)
            try:
                if second is None:
                    return await self.relay(first, "direct", with_kv_params(self.raw, self.body, None), first)
                if kv is None or kv[0] != first:
                    kv = (first, await self.prefill(first))
                return await self.relay(
                    second, "decode", with_kv_params(self.raw, self.body, kv[1]), f"{first}->{second}"
                )
            except EngineAnswer as answer:
                answer.response.headers["X-Request-Id"] = self.request_id
                return answer.response
            except HopError as error:
                last = error
                self.failed(error)
                avoid.add(error.replica)
                if error.hop != "decode" or error.kind != "connect":
                    kv = None  # the decode may have pulled (and freed) the KV: prefill again
        assert last is not None  # max_attempts ≥ 1, and every try that did not answer failed with a HopError
        router.metrics.inc(router.metrics.failed, str(last.status))
        return openai_error(
            f"{last.message} (after {len(avoid)} failed replica(s))", last.status, **{"X-Request-Id": self.request_id}
        )

    def failed(self, error: HopError) -> None:
        router, m = self.router, self.router.metrics
        m.inc(m.errors, error.replica, error.hop)
        if error.kind == "timeout":
            m.inc(m.timeouts, error.replica, error.hop)
        if router.health.request_failed(error.replica, time.monotonic()):
            m.inc(m.ejections, error.replica)

    async def prefill(self, replica: str) -> object:
        router = self.router
        target = self.targets[(replica, self.path, "prefill")]
        router.outstanding[replica] += 1
        try:
            kv_params = await prefill_hop(router.session, target, prefill_body(self.body), self.headers)
        finally:
            router.outstanding[replica] -= 1
        router.health.request_succeeded(replica)
        return kv_params

    async def relay(self, replica: str, hop: str, data: bytes, route: str) -> web.StreamResponse:
        router = self.router
        target = self.targets[(replica, self.path, hop)]
        reply = {"X-Request-Id": self.request_id, "X-Hexgen2-Route": route}
        router.outstanding[replica] += 1
        try:
            response, cut = await relay_hop(
                router.session, target, data, self.headers, self.stream, self.request, reply
            )
        finally:
            router.outstanding[replica] -= 1
        first = route.split("->")[0]
        if cut is None:
            router.health.request_succeeded(replica)
            router.metrics.inc(router.metrics.requests, first, replica if hop == "decode" else "")
        else:
            router.metrics.inc(router.metrics.cuts, replica)
            self.failed(HopError(replica, hop, "cut", cut))  # type: ignore[arg-type]
        return response


def serve(config_path: Path, host: str, port: int) -> None:
    """Run the router until SIGTERM/SIGINT (aiohttp's run_app shuts down gracefully on both).

    A bad config or secret file is a LaunchError (the CLI prints it and exits 2) before anything listens.
    """
    config = load_config(config_path)
    api_key = read_secret(config.api_key_file) if config.api_key_file else None
    engine_key = read_secret(config.engine_key_file) if config.engine_key_file else None
    app = Router(config, api_key, engine_key).make_app()
    web.run_app(app, host=host, port=port, access_log=None, print=None, loop=event_loop())


def event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (part of the `launch` extra): it halves the event loop's share of a
    request's CPU time (benchmarks/router_failover.py); asyncio's own otherwise."""
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def make_app(config: Mapping[str, Any] | RouterConfig) -> web.Application:
    """An app from a config (tests); secrets are read as `serve` does."""
    parsed = config if isinstance(config, RouterConfig) else RouterConfig.model_validate(config)
    api_key = read_secret(parsed.api_key_file) if parsed.api_key_file else None
    engine_key = read_secret(parsed.engine_key_file) if parsed.engine_key_file else None
    return Router(parsed, api_key, engine_key).make_app()
