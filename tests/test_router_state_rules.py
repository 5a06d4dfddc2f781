"""launcher.router's state and lifecycle, in-process against scripted fake engines (tests/fakes/scripted_engine.py):
a config switched in the middle of a request, /admin/state, probing (out, back, at its interval, stopped with the
router), the connection pool, what /health says for each combination of replicas out (pure, no server), and the
`serve` entry point (run_app replaced, so nothing listens).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

import launcher.router as router_module
from launcher.private import write_secret
from launcher.router import Router
from launcher.router_config import RouterConfig

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from scripted_engine import MODEL, Dead, Engine, bounded, config, router_of, running, until


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
