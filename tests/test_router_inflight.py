"""launcher.router's in-flight counters, in-process against small fake engines (aiohttp test servers, no Ray, no
subprocess): they count what is in flight on each backend while requests are held, and return to zero for every
backend after requests that succeed, fail at either hop, hit an unreachable engine, or are dropped by the client."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientError, ClientSession, web
from aiohttp.test_utils import TestServer

from launcher.router import make_app

MODEL = "m"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fake_engine(
    engine_id: str, role: str, hold: asyncio.Event | None = None, arrived: list | None = None
) -> web.Application:
    """An engine that answers by the prompt: 'prefill-500', 'no-kv', 'decode-500', 'stream' change what it does;
    with `hold` it keeps every request until the event is set; `arrived` records (engine, body, request id)."""

    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = str(body.get("prompt", ""))
        if arrived is not None:
            arrived.append((engine_id, body, request.headers.get("X-Request-Id")))
        if hold is not None:
            await hold.wait()
        if role == "prefill":
            if "prefill-500" in prompt or "prefill-400" in prompt:
                return web.json_response({"error": {"message": "boom"}}, status=400 if "400" in prompt else 500)
            kv = {} if "no-kv" in prompt else {"kv_transfer_params": {"remote_engine_id": engine_id}}
            return web.json_response({"choices": [{"text": "x"}], **kv})
        if "decode-500" in prompt:
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if body.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for i in range(20):
                await response.write(f"data: {engine_id}:{i}\n\n".encode())
                await asyncio.sleep(0.005)
                if "dies" in prompt and i == 2:
                    assert request.transport is not None
                    request.transport.abort()  # the engine crashes mid-answer
                    return response
            await response.write_eof()
            return response
        return web.json_response({"choices": [{"text": f" {engine_id}"}]})

    app = web.Application(client_max_size=2**30)
    app.router.add_post("/v1/completions", completions)
    return app


def bounded(scenario: Awaitable[None], seconds: float = 30.0) -> None:
    """Run a test's scenario, failing (not hanging) when the router stops answering."""
    asyncio.run(asyncio.wait_for(scenario, seconds))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend(engine_id: str, role: str, url: str, limit: int = 4) -> dict[str, Any]:
    return {"id": engine_id, "role": role, "url": url, "max_outstanding": limit}


async def outstanding(session: ClientSession, router: str) -> dict[str, float]:
    async with session.get(router + "/metrics") as response:
        text = await response.text()
    return {m[1]: float(m[2]) for m in re.finditer(r'hexgen2_router_outstanding\{replica="([^"]+)"\} (\S+)', text)}


async def complete(session: ClientSession, router: str, prompt: str, stream: bool = False) -> int:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "stream": stream}
    async with session.post(router + "/v1/completions", json=body) as response:
        await response.read()
        return response.status


async def serve(apps: dict[str, web.Application]) -> dict[str, TestServer]:
    servers = {name: TestServer(app, host="127.0.0.1") for name, app in apps.items()}
    for server in servers.values():
        await server.start_server()
    return servers


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def one_route(engines: dict[str, TestServer]) -> dict[str, Any]:
    """The router's config for prefill engine p1 routing all its KV to decode engine d1."""
    return {
        "model": MODEL,
        "seed": 0,
        "backends": [backend("p1", "prefill", url(engines["p1"])), backend("d1", "decode", url(engines["d1"]))],
        "routes": [{"source": "p1", "target": "d1", "weight": 1.0}],
        "colocated_weights": {},
    }


def test_counts_what_is_in_flight_and_returns_to_zero() -> None:
    """Three requests held in the decode engine: the decode replica counts 3 in flight, the prefill replica none
    (the router counts each hop while it runs, and the prefill hop has ended); then 0."""

    async def scenario() -> None:
        hold, arrived = asyncio.Event(), []
        engines = await serve({"p1": fake_engine("p1", "prefill"), "d1": fake_engine("d1", "decode", hold, arrived)})
        config = one_route(engines)
        router = (await serve({"router": make_app(config)}))["router"]
        async with ClientSession() as session:
            requests = [asyncio.create_task(complete(session, url(router), f"r{i}")) for i in range(3)]
            async with asyncio.timeout(20):
                while len(arrived) < 3:
                    await asyncio.sleep(0.01)
            assert await outstanding(session, url(router)) == {"p1": 0.0, "d1": 3.0}
            hold.set()
            assert await asyncio.gather(*requests) == [200, 200, 200]
            assert await outstanding(session, url(router)) == {"p1": 0.0, "d1": 0.0}
        for server in (router, *engines.values()):
            await server.close()

    bounded(scenario())


def test_counters_return_to_zero_after_failures_at_every_hop() -> None:
    async def scenario() -> None:
        engines = await serve(
            {
                "p1": fake_engine("p1", "prefill"),
                "d1": fake_engine("d1", "decode"),
                "c1": fake_engine("c1", "colocated"),
            }
        )
        dead = f"http://127.0.0.1:{closed_port()}"
        backends = [
            backend("p1", "prefill", url(engines["p1"])),
            backend("d1", "decode", url(engines["d1"])),
            backend("c1", "colocated", url(engines["c1"])),
            backend("p-dead", "prefill", dead),
        ]
        config = {
            "model": MODEL,
            "seed": 3,
            "backends": backends,
            "routes": [
                {"source": "p1", "target": "d1", "weight": 2.0},
                {"source": "p-dead", "target": "d1", "weight": 1.0},
            ],
            "colocated_weights": {"c1": 1.0},
        }
        router = (await serve({"router": make_app(config)}))["router"]
        prompts = ["ok", "prefill-500", "no-kv", "decode-500", "stream"] * 8
        async with ClientSession() as session:
            statuses = await asyncio.gather(*(complete(session, url(router), p, stream=p == "stream") for p in prompts))
            assert 200 in statuses and set(statuses) - {200} and set(statuses) <= {200, 500, 502}, statuses
            await drop_mid_stream(session, url(router))
            await asyncio.sleep(0.2)  # the router notices the dropped client at its next write
            counts = await outstanding(session, url(router))
            assert set(counts) == {"p1", "d1", "c1", "p-dead"}, "every backend was used"
            assert all(value == 0.0 for value in counts.values()), counts
        for server in (router, *engines.values()):
            await server.close()

    bounded(scenario())


async def drop_mid_stream(session: ClientSession, router: str) -> None:
    """Clients that read the first chunk of a streamed answer and hang up."""
    for _ in range(4):
        body = {"model": MODEL, "prompt": "stream", "max_tokens": 3, "stream": True}
        async with session.post(router + "/v1/completions", json=body) as response:
            if response.status == 200:
                await response.content.readany()
            response.close()


async def metric(session: ClientSession, router: str, name: str) -> dict[tuple[str, ...], float]:
    """A Prometheus metric's samples by their label values (labels in alphabetical order, as Prometheus prints them)."""
    async with session.get(router + "/metrics") as response:
        text = await response.text()
    found = {}
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
        found[tuple(v for v in re.findall(r'="([^"]*)"', m[1]))] = float(m[2])
    return found


def test_errors_are_counted_by_replica_and_hop_and_passed_on() -> None:
    """A prefill answering 400 is the client's error: its answer goes back as is and counts against no replica. A
    decode failing (retried, then 502 once every replica failed), or dying in the middle of a stream, is an error
    at the decode hop; a colocated replica failing, at the direct hop."""

    async def scenario() -> None:
        engines = await serve({name: fake_engine(name, role) for name, role in (("p1", "prefill"), ("d1", "decode"))})
        config = one_route(engines)
        colocated = await serve({"c1": fake_engine("c1", "colocated")})
        direct = {**config, "backends": [backend("c1", "colocated", url(colocated["c1"]))], "routes": [],
                  "colocated_weights": {"c1": 1.0}}  # fmt: skip
        routers = await serve({"pd": make_app(config), "c": make_app(direct)})
        pd, c = url(routers["pd"]), url(routers["c"])
        async with ClientSession() as session:
            assert await complete(session, pd, "prefill-400") == 400
            assert await complete(session, pd, "decode-500") == 502
            assert await complete(session, c, "decode-500") == 502
            with contextlib.suppress(ClientError):
                assert await complete(session, pd, "stream dies", stream=True) == 200
            assert await complete(session, pd, "ok") == 200
            errors = await metric(session, pd, "hexgen2_router_errors_total")
            assert errors == {("decode", "d1"): 2.0}  # (hop, replica)
            assert await metric(session, c, "hexgen2_router_errors_total") == {("direct", "c1"): 1.0}
            routed = await metric(session, pd, "hexgen2_router_requests_total")  # (decode, prefill)
            assert routed == {("d1", "p1"): 1.0}, "answered requests, by pair (the cut stream is not one)"
            assert await outstanding(session, pd) == {"p1": 0.0, "d1": 0.0}
            async with session.get(pd + "/v1/models") as response:
                assert [m["id"] for m in (await response.json())["data"]] == [MODEL]
        for server in (*routers.values(), *engines.values(), *colocated.values()):
            await server.close()

    bounded(scenario())


def test_request_bodies_up_to_max_body_bytes_are_accepted() -> None:
    """16 MiB by default (launcher.router_config)."""

    async def scenario() -> None:
        engines = await serve({"c1": fake_engine("c1", "colocated")})
        config = {"model": MODEL, "seed": 0, "backends": [backend("c1", "colocated", url(engines["c1"]))],
                  "routes": [], "colocated_weights": {"c1": 1.0}}  # fmt: skip
        router = (await serve({"router": make_app(config)}))["router"]
        padding = 16 * 2**20 - 200  # the JSON around the prompt takes less than 200 bytes
        async with ClientSession() as session:
            assert await complete(session, url(router), "x" * padding) == 200
            assert await complete(session, url(router), "x" * (padding + 400)) == 413
        for server in (router, *engines.values()):
            await server.close()

    bounded(scenario())


def test_the_prefill_hop_asks_for_kv_and_the_decode_hop_gets_it() -> None:
    """vLLM's pull-mode protocol: prefill gets max_tokens=1, no stream, do_remote_decode; decode gets the client's
    request with the kv_transfer_params the prefill returned; both hops carry the client's X-Request-Id."""

    async def scenario() -> None:
        arrived: list = []
        engines = await serve({n: fake_engine(n, r, arrived=arrived) for n, r in (("p1", "prefill"), ("d1", "decode"))})
        config = one_route(engines)
        router = (await serve({"router": make_app(config)}))["router"]
        async with ClientSession() as session:
            body = {"model": MODEL, "prompt": "hi", "max_tokens": 7, "stream": True, "stream_options": {"x": 1}}
            async with session.post(url(router) + "/v1/completions", json=body, headers={"X-Request-Id": "r-1"}) as r:
                assert (
                    r.status == 200 and r.headers["X-Hexgen2-Route"] == "p1->d1" and r.headers["X-Request-Id"] == "r-1"
                )
                await r.read()
        (p, prefill, pid), (d, decode, did) = arrived
        assert (p, d, pid, did) == ("p1", "d1", "r-1", "r-1")
        assert prefill["max_tokens"] == 1 and prefill["stream"] is False and "stream_options" not in prefill
        assert prefill["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False}
        assert decode == {**body, "kv_transfer_params": {"remote_engine_id": "p1"}}
        for server in (router, *engines.values()):
            await server.close()

    bounded(scenario())
