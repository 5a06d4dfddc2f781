"""launcher.router's rules for a request's way through, in-process against scripted fake engines
(tests/fakes/scripted_engine.py; no Ray, no subprocess, every scenario bounded): which doors need which key, what each
refusal answers, when a failed hop is retried and whether the prefill is redone, and what every Prometheus series
counts (requests, latency, errors, timeouts, retries, ejections, cuts, failures).

The expectations are the protocol's (module docstring of launcher.router), counted by hand per scenario; the fakes
record what reached each engine so the tests see both sides of a hop.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from pathlib import Path

from launcher.private import write_secret

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from scripted_engine import MODEL, QUICK, Dead, Engine, bounded, config, running, until


# --- a request's way through --------------------------------------------------------------------------------------
def test_prefill_then_decode_ids_and_the_request_metrics() -> None:
    """Without keys: no door, no secret sent to the engines (nor an Accept-Encoding: answers come uncompressed, as
    relayed). Request ids: the client's when well formed, else the router's own (prefix-counter, a new one per
    request). Counted: requests by pair, and each request's end-to-end time in the latency histogram (count =
    requests, 0 < sum < the wall time they took)."""

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
