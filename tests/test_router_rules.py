"""launcher.router's rules, one by one, in-process against scripted fake engines (aiohttp test servers on 127.0.0.1,
no Ray, no subprocess, every scenario bounded): which doors need which key, what each refusal answers, when a
failed hop is retried and whether the prefill is redone, what every Prometheus series counts (latency, timeouts,
ejections, retries, failures), what /health and /admin/state report, probing, and a config switched mid-request.

The expectations are the protocol's (module docstring of launcher.router), counted by hand per scenario; the
fakes record what reached each engine so the tests see both sides of a hop.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer, make_mocked_request

import launcher.router as router_module
from launcher.private import write_secret
from launcher.router import Router, make_app
from launcher.router_config import RouterConfig

MODEL = "m"
QUICK = {"connect_s": 1.0, "first_byte_s": 2.0, "idle_s": 2.0, "total_s": 5.0}  # generous: a loaded CI is slow


class Engine:
    """A fake vLLM engine scripted per request: `script` holds what the next requests do ("ok", "500", "400",
    "hold": wait for `gate`, "hang": never answer in time, "cut": die after two chunks of a stream); `seen`
    records (body, headers) of each request."""

    def __init__(self, name: str, role: str) -> None:
        self.name, self.role = name, role
        self.script: list[str] = []
        self.seen: list[tuple[dict[str, Any], Any]] = []
        self.gate = asyncio.Event()
        self.healthy = True
        self.probes = 0
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append((body, request.headers.copy()))
        action = self.script.pop(0) if self.script else "ok"
        if action == "hold":
            await self.gate.wait()
            action = self.script.pop(0) if self.script else "ok"
        if action == "hang":
            await asyncio.sleep(5)
        if action in ("500", "400"):
            return web.json_response({"error": {"message": f"{self.name} says {action}"}}, status=int(action))
        if self.role == "prefill":
            return web.json_response(
                {"choices": [{"text": "x"}], "kv_transfer_params": {"remote_engine_id": self.name}}
            )
        if body.get("stream") is True:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(3):
                await response.write(f"data: {self.name}:{i}\n\n".encode())
                if action == "cut" and i == 1:
                    assert request.transport is not None
                    request.transport.abort()  # the engine dies after two chunks reached the client
                    return response
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            return response
        return web.json_response({"choices": [{"text": self.name}]})

    async def health(self, _request: web.Request) -> web.Response:
        self.probes += 1
        return web.Response(status=200 if self.healthy else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/health", self.health)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def bounded(scenario: Awaitable[None], seconds: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(scenario, seconds))


class Running:
    """A router over engines, and a client session to talk to it."""

    def __init__(self, router: Router, url: str, session: ClientSession) -> None:
        self.router, self.url, self.session = router, url, session

    async def post(self, body: object, headers: dict[str, str] | None = None, path: str = "/v1/completions"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(self.url + path, data=data, headers=headers or {}) as r:
            return r.status, r.headers.copy(), await r.read()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.get(self.url + path, headers=headers or {}) as r:
            return r.status, await r.read()

    async def ask(self, prompt: str = "hi", headers: dict[str, str] | None = None, **extra: Any):
        return await self.post({"model": MODEL, "prompt": prompt, "max_tokens": 3, **extra}, headers)

    async def metric(self, name: str, headers: dict[str, str] | None = None) -> dict[tuple[str, ...], float]:
        """A series' samples by label values (alphabetical label order, as Prometheus prints them)."""
        status, raw = await self.get("/metrics", headers)
        assert status == 200
        found = {}
        for m in re.finditer(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", raw.decode(), re.MULTILINE):
            found[tuple(re.findall(r'="([^"]*)"', m[1] or ""))] = float(m[2])
        return found


def config(engines: list[Engine], routes: list[tuple[str, str, float]], **settings: Any) -> dict[str, Any]:
    colocated = {e.name: 1.0 for e in engines if e.role == "colocated"}
    backends = [{"id": e.name, "role": e.role, "url": e.url, "max_outstanding": 8} for e in engines]
    health = {"interval_s": 30.0, "eject_after": 10, **settings.pop("health", {})}
    return {
        "model": MODEL,
        "backends": backends,
        "routes": [{"source": s, "target": t, "weight": w} for s, t, w in routes],
        "colocated_weights": colocated,
        "timeouts": {"prefill": QUICK, "decode": QUICK},
        "health": health,
        **settings,
    }


@asynccontextmanager
async def running(
    engines: list[Engine], routes: list[tuple[str, str, float]], **settings: Any
) -> AsyncIterator[Running]:
    for engine in engines:
        if engine.server is None and not engine.name.startswith("dead"):
            await engine.start()
    app = make_app(config(engines, routes, **settings))
    router = router_of(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield Running(router, str(server.make_url("")).rstrip("/"), session)
    finally:
        await server.close()
        for engine in engines:
            if engine.server is not None:
                await engine.server.close()


def router_of(app: web.Application) -> Router:
    """The Router whose start() is the app's startup hook."""
    return next(hook.__self__ for hook in app.on_startup if isinstance(getattr(hook, "__self__", None), Router))


class Dead(Engine):
    """A backend nobody listens on (connection refused)."""

    def __init__(self, name: str, role: str) -> None:
        super().__init__(name, role)
        self._url = closed_port_url()

    @property
    def url(self) -> str:
        return self._url


async def until(condition, seconds: float = 3.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


# --- a request's way through --------------------------------------------------------------------------------------
def test_prefill_then_decode_ids_and_the_request_metrics() -> None:
    """Without keys: no door, no secret sent to the engines (nor an Accept-Encoding: answers come uncompressed,
    as relayed). Request ids: the client's when well formed, else the
    router's own (prefix-counter, a new one per request). Counted: requests by pair, and each request's
    end-to-end time in the latency histogram (count = requests, 0 < sum < the wall time they took)."""

    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        async with running([p1, d1], [("p1", "d1", 1.0)]) as r:
            started = time.perf_counter()
            answers = [await r.ask(), await r.ask(), await r.ask(headers={"X-Request-Id": "r-1"})]
            answers.append(await r.ask(headers={"X-Request-Id": "not ok"}))
            took = time.perf_counter() - started
            assert [status for status, _, _ in answers] == [200] * 4
            ids = [headers["X-Request-Id"] for _, headers, _ in answers]
            assert all(re.fullmatch(r"[0-9a-f]+-\d+", i) for i in ids[:2] + ids[3:]) and len(set(ids)) == 4, ids
            assert ids[2] == "r-1"
            assert [h["X-Request-Id"] for _, h in p1.seen] == [h["X-Request-Id"] for _, h in d1.seen] == ids
            assert all("Authorization" not in h and "Accept-Encoding" not in h for _, h in p1.seen + d1.seen)
            assert all(h["X-Hexgen2-Route"] == "p1->d1" for _, h, _ in answers)
            assert await r.metric("hexgen2_router_requests_total") == {("d1", "p1"): 4.0}
            count = (await r.metric("hexgen2_router_request_seconds_count"))[()]
            total = (await r.metric("hexgen2_router_request_seconds_sum"))[()]
            assert count == 4.0 and 0 < total < took, (count, total, took)
            state = json.loads((await r.get("/admin/state", {"Authorization": "Bearer None"}))[1])
            assert state["error"]["code"] == 401, "no deployment secret: the admin doors stay shut"

    bounded(scenario())


def test_doors_take_the_api_key_and_engines_get_the_deployment_secret(tmp_path: Path) -> None:
    write_secret(tmp_path / "api.key", "client-key")
    write_secret(tmp_path / "engine.secret", "engine-secret")
    client, admin = {"Authorization": "Bearer client-key"}, {"Authorization": "Bearer engine-secret"}
    keys = {"api_key_file": str(tmp_path / "api.key"), "engine_key_file": str(tmp_path / "engine.secret")}

    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        async with running([p1, d1], [("p1", "d1", 1.0)], **keys) as r:
            for headers in ({}, {"Authorization": "Bearer wrong"}, admin):
                status, got, raw = await r.ask(headers=headers)
                assert status == 401 and got["WWW-Authenticate"] == "Bearer", (headers, raw)
                assert json.loads(raw) == {
                    "error": {"message": "missing or wrong API key", "type": "authentication_error", "code": 401}
                }
            for path in ("/v1/models", "/metrics"):
                assert (await r.get(path))[0] == 401 and (await r.get(path, admin))[0] == 401
            status, raw = await r.get("/v1/models", client)
            model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "hexgen2"}
            assert status == 200 and json.loads(raw) == {"object": "list", "data": [model]}
            assert (await r.ask(headers=client))[0] == 200
            assert [h["Authorization"] for _, h in p1.seen + d1.seen] == ["Bearer engine-secret"] * 2
            for headers in ({}, client):
                assert (await r.get("/admin/state", headers))[0] == 401
                assert (await r.post(config([p1, d1], [("p1", "d1", 1.0)]), headers, "/admin/config"))[0] == 401
            status, raw = await r.get("/admin/state", admin)
            assert status == 200 and json.loads(raw)["backends"] == ["d1", "p1"]
            assert await r.metric("hexgen2_router_rejected_total", client) == {("unauthorized",): 11.0}

    bounded(scenario())


def test_refusals_at_the_door_busy_too_large_not_json() -> None:
    """max_concurrent = 1: a second request while one is in flight gets 429 (Retry-After: 1), the next after it
    ends is served; bodies over max_body_bytes get 413, non-JSON and non-objects 400; each refusal is counted."""

    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        d1.script = ["hold"]
        limits = {"max_concurrent": 1, "max_body_bytes": 1000}
        async with running([p1, d1], [("p1", "d1", 1.0)], limits=limits) as r:
            held = asyncio.create_task(r.ask())
            await until(lambda: len(d1.seen) == 1)
            status, headers, raw = await r.ask()
            assert status == 429 and headers["Retry-After"] == "1", raw
            assert json.loads(raw)["error"] == {
                "message": "too many requests in flight; retry later", "type": "rate_limit_error", "code": 429
            }  # fmt: skip
            assert r.router.active == 1
            d1.gate.set()
            assert (await held)[0] == 200 and r.router.active == 0
            assert [(await r.ask())[0] for _ in range(2)] == [200, 200]
            status, _, raw = await r.ask("x" * 1000)
            assert status == 413 and json.loads(raw)["error"]["message"] == "the request body is larger than 1000 bytes"
            for body, message in (
                (b"{no", "the request body is not JSON"),
                (b"[1]", "the request body must be a JSON object"),
            ):
                status, _, raw = await r.post(body)
                assert status == 400 and json.loads(raw)["error"] == {
                    "message": message, "type": "invalid_request_error", "code": 400
                }  # fmt: skip
            rejected = await r.metric("hexgen2_router_rejected_total")
            assert rejected == {("busy",): 1.0, ("too_large",): 1.0, ("bad_request",): 2.0}
            assert r.router.active == 0

    bounded(scenario())


# --- failures and retries -----------------------------------------------------------------------------------------
def test_every_decode_failing_is_a_502_after_each_was_tried_once() -> None:
    """max_attempts 5, two decodes both answering 500: each is tried once (the prefill redone before the second,
    since the first decode may have pulled its KV), then the router gives up with the last error, counted once
    as failed, once as a retry (of a decode hop), and as one error per decode; no timeouts, no ejections."""

    async def scenario() -> None:
        p1, d1, d2 = Engine("p1", "prefill"), Engine("d1", "decode"), Engine("d2", "decode")
        d1.script, d2.script = ["500"], ["500"]
        routes = [("p1", "d1", 1.0), ("p1", "d2", 1.0)]
        async with running([p1, d1, d2], routes, limits={"max_attempts": 5}) as r:
            status, headers, raw = await r.ask(headers={"X-Request-Id": "q-7"})
            assert status == 502 and headers["X-Request-Id"] == "q-7"
            error = json.loads(raw)["error"]
            assert error["type"] == "router_error" and error["code"] == 502
            assert re.fullmatch(
                r"decode replica d[12] answered 500: .* \(after 2 failed replica\(s\)\)", error["message"]
            )
            assert (len(p1.seen), len(d1.seen), len(d2.seen)) == (2, 1, 1)
            assert await r.metric("hexgen2_router_errors_total") == {("decode", "d1"): 1.0, ("decode", "d2"): 1.0}
            assert await r.metric("hexgen2_router_retries_total") == {("decode",): 1.0}
            assert await r.metric("hexgen2_router_failed_total") == {("502",): 1.0}
            assert await r.metric("hexgen2_router_timeouts_total") == {}
            assert await r.metric("hexgen2_router_ejections_total") == {}
            assert await r.metric("hexgen2_router_outstanding") == {("d1",): 0.0, ("d2",): 0.0, ("p1",): 0.0}

    bounded(scenario())


def test_a_refused_decode_keeps_the_prefills_kv_for_the_next_decode() -> None:
    """A decode that refuses the connection never pulled the KV: the same kv_transfer_params go to another decode
    and the prefill runs once. (d1's weight makes it the first pick.)"""

    async def scenario() -> None:
        p1, d1, d2 = Engine("p1", "prefill"), Dead("dead-d1", "decode"), Engine("d2", "decode")
        async with running([p1, d1, d2], [("p1", "dead-d1", 100.0), ("p1", "d2", 0.01)]) as r:
            status, headers, raw = await r.ask()
            assert status == 200 and headers["X-Hexgen2-Route"] == "p1->d2", raw
            assert len(p1.seen) == 1
            assert d2.seen[0][0]["kv_transfer_params"] == {"remote_engine_id": "p1"}
            assert await r.metric("hexgen2_router_errors_total") == {("decode", "dead-d1"): 1.0}
            assert await r.metric("hexgen2_router_retries_total") == {("decode",): 1.0}

    bounded(scenario())


def test_a_hop_that_times_out_is_counted_as_a_timeout_and_retried() -> None:
    """d1 does not answer within the decode hop's first_byte_s (0.3 s here): a timeout, counted as error and
    timeout; the request then succeeds on d2."""

    async def scenario() -> None:
        p1, d1, d2 = Engine("p1", "prefill"), Engine("d1", "decode"), Engine("d2", "decode")
        d1.script = ["hang"]
        timeouts = {"prefill": QUICK, "decode": {**QUICK, "first_byte_s": 0.3}}
        async with running([p1, d1, d2], [("p1", "d1", 100.0), ("p1", "d2", 0.01)], timeouts=timeouts) as r:
            status, headers, _ = await r.ask()
            assert status == 200 and headers["X-Hexgen2-Route"] == "p1->d2"
            assert await r.metric("hexgen2_router_timeouts_total") == {("decode", "d1"): 1.0}
            assert await r.metric("hexgen2_router_errors_total") == {("decode", "d1"): 1.0}

    bounded(scenario())


def test_errors_in_a_row_eject_and_a_success_between_them_resets_the_count() -> None:
    """eject_after 2, one try per request: fail, succeed, fail ejects nobody (at either hop); a second failure in
    a row ejects the replica (counted once), and with it out /health says unavailable."""

    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        p1.script = ["500", "ok", "ok", "500"]
        d1.script = ["500", "ok", "500", "500"]
        settings = {"limits": {"max_attempts": 1}, "health": {"eject_after": 2}}
        async with running([p1, d1], [("p1", "d1", 1.0)], **settings) as r:
            assert [(await r.ask())[0] for _ in range(5)] == [502, 502, 200, 502, 502]
            assert await r.metric("hexgen2_router_ejections_total") == {}
            assert (await r.ask())[0] == 502  # d1's second error in a row
            assert await r.metric("hexgen2_router_ejections_total") == {("d1",): 1.0}
            assert await r.metric("hexgen2_router_replica_up") == {("d1",): 0.0, ("p1",): 1.0}
            status, raw = await r.get("/health")
            assert status == 503 and json.loads(raw) == {
                "status": "unavailable",
                "replicas": 2,
                "out": {"d1": "ejected"},
            }

    bounded(scenario())


def test_an_engines_own_4xx_goes_back_as_is_with_the_request_id_and_no_retry() -> None:
    async def scenario() -> None:
        p1, p2, d1 = Engine("p1", "prefill"), Engine("p2", "prefill"), Engine("d1", "decode")
        p1.script = p2.script = ["400"]
        async with running([p1, p2, d1], [("p1", "d1", 1.0), ("p2", "d1", 1.0)]) as r:
            status, headers, raw = await r.ask(headers={"X-Request-Id": "c-4"})
            assert status == 400 and headers["X-Request-Id"] == "c-4" and b"says 400" in raw
            assert len(p1.seen) + len(p2.seen) == 1 and not d1.seen
            assert await r.metric("hexgen2_router_retries_total") == {}
            assert await r.metric("hexgen2_router_errors_total") == {}

    bounded(scenario())


# --- colocated replicas and streams -------------------------------------------------------------------------------
def test_colocated_gets_the_request_directly_streamed_or_not() -> None:
    """No kv_transfer_params for a colocated engine; `"stream": true` (and only true) streams; the pair counted
    is (c1, no decode)."""

    async def scenario() -> None:
        c1 = Engine("c1", "colocated")
        async with running([c1], []) as r:
            status, headers, raw = await r.ask()
            assert (
                status == 200 and headers["X-Hexgen2-Route"] == "c1" and json.loads(raw)["choices"][0]["text"] == "c1"
            )
            assert "kv_transfer_params" not in c1.seen[0][0]
            status, headers, raw = await r.ask(stream=True)
            assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
            assert raw.decode().split("\n\n")[:4] == ["data: c1:0", "data: c1:1", "data: c1:2", "data: [DONE]"]
            status, headers, raw = await r.ask(stream="yes")
            assert status == 200 and json.loads(raw)["choices"][0]["text"] == "c1"
            assert await r.metric("hexgen2_router_requests_total") == {("", "c1"): 3.0}

    bounded(scenario())


def test_a_pd_stream_is_relayed_from_the_decode() -> None:
    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        async with running([p1, d1], [("p1", "d1", 1.0)]) as r:
            status, _, raw = await r.ask(stream=True)
            assert status == 200 and raw.decode().startswith("data: d1:0\n\n") and raw.rstrip().endswith(b"[DONE]")
            assert p1.seen[0][0]["stream"] is False and d1.seen[0][0]["stream"] is True

    bounded(scenario())


def test_a_stream_cut_after_it_began_is_a_cut_and_an_error_not_a_served_request() -> None:
    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        d1.script = ["cut"]
        async with running([p1, d1], [("p1", "d1", 1.0)]) as r:
            status, _, raw = await r.ask(stream=True)
            assert status == 200 and raw.startswith(b"data: d1:0\n\ndata: d1:1\n\n") and b"upstream_error" in raw
            assert await r.metric("hexgen2_router_stream_cuts_total") == {("d1",): 1.0}
            assert await r.metric("hexgen2_router_errors_total") == {("decode", "d1"): 1.0}
            assert await r.metric("hexgen2_router_requests_total") == {}
            assert (await r.ask(stream=True))[0] == 200
            assert await r.metric("hexgen2_router_requests_total") == {("d1", "p1"): 1.0}

    bounded(scenario())


# --- config switches ----------------------------------------------------------------------------------------------
def test_a_new_config_mid_request_serves_its_retry_and_keeps_in_flight_counts(tmp_path: Path) -> None:
    """A decode hop held on d1 while the same config is posted again (its in-flight count must survive) and then a
    config without d1, with p1 → d3 and eject_after 1: d1's 500 is retried on d3 through the new config's engines;
    /admin/state then shows d1 removed with nothing in flight; a d3 error ejects at once (the new health policy)."""

    async def scenario() -> None:
        p1, d1, d3 = Engine("p1", "prefill"), Engine("d1", "decode"), Engine("d3", "decode")
        d1.script = ["hold", "500"]
        for engine in (p1, d1, d3):
            await engine.start()
        write_secret(tmp_path / "engine.secret", "s")
        secret, key = {"Authorization": "Bearer s"}, {"engine_key_file": str(tmp_path / "engine.secret")}
        async with running([p1, d1], [("p1", "d1", 1.0)], limits={"max_attempts": 2}, **key) as r:
            first = asyncio.create_task(r.ask())
            await until(lambda: len(d1.seen) == 1)
            same = config([p1, d1], [("p1", "d1", 1.0)], limits={"max_attempts": 2}, **key)
            assert (await r.post(same, secret, "/admin/config"))[0] == 200
            new = config([p1, d3], [("p1", "d3", 1.0)], limits={"max_attempts": 1}, health={"eject_after": 1}, **key)
            status, _, raw = await r.post(new, secret, "/admin/config")
            assert status == 200 and json.loads(raw) == {"backends": ["d3", "p1"]}
            d1.gate.set()
            status, headers, _ = await first
            assert status == 200 and headers["X-Hexgen2-Route"] == "p1->d3"
            state = json.loads((await r.get("/admin/state", secret))[1])
            assert state == {
                "active": 0,
                "replicas": {
                    "d1": {"outstanding": 0, "health": "removed"},
                    "d3": {"outstanding": 0, "health": "up"},
                    "p1": {"outstanding": 0, "health": "up"},
                },
                "backends": ["d3", "p1"],
            }
            d3.script = ["500"]
            assert (await r.ask())[0] == 502
            assert await r.metric("hexgen2_router_ejections_total") == {("d3",): 1.0}
            bad = {**new, "backends": [{**new["backends"][0], "url": "nope"}]}
            status, _, raw = await r.post(bad, secret, "/admin/config")
            assert status == 400 and "backends[0].url" in json.loads(raw)["error"]["message"]
            assert json.loads(raw)["error"]["type"] == "invalid_request_error"

    bounded(scenario())


# --- probes and lifecycle -----------------------------------------------------------------------------------------
def test_probes_take_replicas_out_and_back_and_stop_with_the_router() -> None:
    """interval 0.1 s, one failed probe takes a replica out, one good one brings it back: an engine answering 503
    on /health and a backend nobody listens on go out; the 503 one returns once healthy. Probes come once per
    interval (about 3 in 0.35 s, not hundreds). Closing the router cancels the prober and closes its session."""

    async def scenario() -> None:
        p1, d1, d2 = Engine("p1", "prefill"), Engine("d1", "decode"), Dead("dead-d2", "decode")
        d1.healthy = False
        health = {"interval_s": 0.1, "unhealthy_after": 1, "healthy_after": 1, "probe_timeout_s": 0.5}
        routes = [("p1", "d1", 1.0), ("p1", "dead-d2", 1.0)]
        async with running([p1, d1, d2], routes, health=health) as r:
            router = r.router
            await until(lambda: router.health.down == {"d1", "dead-d2"})
            status, raw = await r.get("/health")
            assert status == 503 and json.loads(raw)["out"] == {"d1": "down", "dead-d2": "down"}
            d1.healthy = True
            await until(lambda: router.health.down == {"dead-d2"})
            probes, started = p1.probes, time.perf_counter()
            await asyncio.sleep(0.35)
            took = time.perf_counter() - started
            assert 1 <= p1.probes - probes <= took / 0.1 + 2, (p1.probes - probes, took)
        assert router.prober is not None and router.prober.cancelled()
        assert router.session is not None and router.session.closed

    bounded(scenario())


def test_hops_run_concurrently_on_one_connection_pool() -> None:
    async def scenario() -> None:
        p1, d1 = Engine("p1", "prefill"), Engine("d1", "decode")
        d1.script = ["hold", "hold", "hold"]
        async with running([p1, d1], [("p1", "d1", 1.0)]) as r:
            asks = [asyncio.create_task(r.ask()) for _ in range(3)]
            await until(lambda: len(d1.seen) == 3)
            assert await r.metric("hexgen2_router_outstanding") == {("d1",): 3.0, ("p1",): 0.0}
            d1.gate.set()
            assert [status for status, _, _ in await asyncio.gather(*asks)] == [200] * 3

    bounded(scenario())


# --- /health, pure ------------------------------------------------------------------------------------------------
FLEET = {
    "model": MODEL,
    "backends": [
        {"id": i, "role": role, "url": "http://127.0.0.1:9", "max_outstanding": 4}
        for i, role in (("p1", "prefill"), ("p2", "prefill"), ("d1", "decode"), ("d2", "decode"), ("c1", "colocated"))
    ],
    "routes": [{"source": p, "target": d, "weight": 1.0} for p in ("p1", "p2") for d in ("d1", "d2")],
    "colocated_weights": {"c1": 1.0},
    "health": {"unhealthy_after": 1},
}


@pytest.mark.parametrize(
    ("out", "status", "code"),
    [
        ((), "ok", 200),
        (("p1", "d1"), "degraded", 200),  # p2 → d2 still serves
        (("c1", "d1"), "degraded", 200),  # so do p1 and p2 → d2
        (("d1", "d2", "c1"), "unavailable", 503),  # prefills up, but no decode and no colocated
        (("p1", "p2", "d1", "d2"), "degraded", 200),  # the colocated replica alone
        (("p1", "p2", "c1"), "unavailable", 503),  # decodes up, but nothing to start a request
        (("p1", "d1", "d2", "c1"), "unavailable", 503),
    ],
)
def test_health_page_says_whether_traffic_has_a_path(out: tuple[str, ...], status: str, code: int) -> None:
    router = Router(RouterConfig.model_validate(FLEET), None, None)
    for replica in out:
        router.health.probed(replica, False, 0.0)
    response = asyncio.run(router.health_page(make_mocked_request("GET", "/health")))
    assert response.status == code
    assert json.loads(response.text) == {"status": status, "replicas": 5, "out": dict.fromkeys(out, "down")}


# --- serve: the process entry point -------------------------------------------------------------------------------
def test_serve_reads_the_secrets_and_runs_the_app_on_an_event_loop(tmp_path: Path, monkeypatch) -> None:
    write_secret(tmp_path / "api.key", "client-key")
    write_secret(tmp_path / "engine.secret", "engine-secret")
    path = tmp_path / "router.json"
    fleet = {**FLEET, "api_key_file": str(tmp_path / "api.key"), "engine_key_file": str(tmp_path / "engine.secret")}
    path.write_text(json.dumps(fleet))
    ran: dict[str, Any] = {}
    monkeypatch.setattr(router_module.web, "run_app", lambda app, **kw: ran.update(app=app, **kw))
    router_module.serve(path, "127.0.0.1", 8123)
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 8123)
    assert isinstance(ran["loop"], asyncio.AbstractEventLoop)
    ran["loop"].close()
    router = router_of(ran["app"])
    assert router.api_auth == b"Bearer client-key" and router.engine_headers["Authorization"] == "Bearer engine-secret"
    path.write_text(json.dumps(FLEET))  # no secret files: no doors, no secret sent
    router_module.serve(path, "127.0.0.1", 8123)
    ran["loop"].close()
    router = router_of(ran["app"])
    assert router.api_auth is None and "Authorization" not in router.engine_headers
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed
    loop = router_module.event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.close()
