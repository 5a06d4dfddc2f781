"""A scripted fake vLLM engine and an in-process router over such engines (aiohttp test servers on 127.0.0.1), for
the router's rule tests (tests/test_router_rules.py, tests/test_router_state_rules.py): each request's behaviour is
scripted per engine, and every engine records what reached it, so a test sees both sides of a hop."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from launcher.router import Router, make_app

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
