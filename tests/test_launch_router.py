"""launcher.router against fake vLLM engines (no Ray): the P/D protocol, doors, failover, timeouts, metrics.

One fleet per module: prefill p1, p2, decode d1, d2, colocated c1 (all requiring the deployment secret) and a
router over p*→d* with short timeouts. Faults are switched on a running engine (`POST /fake/fault`) and
cleared before each test, which also waits until the router has every replica back in rotation.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from launcher.private import write_secret

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))
from fleet import MODEL, Fleet, post_json

API_KEY, ENGINE_KEY = "client-key-123", "engine-secret-456"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ENGINE_KEY}"}
ROUTES = [{"source": p, "target": d, "weight": 1.0} for p in ("p1", "p2") for d in ("d1", "d2")]
COMPLETION = {"model": MODEL, "prompt": "hi", "max_tokens": 3}


def settings(root: Path) -> dict[str, object]:
    hop = {"connect_s": 1.0, "first_byte_s": 1.5, "idle_s": 1.0, "total_s": 4.0}
    return {
        "timeouts": {"prefill": hop, "decode": hop},
        "health": {"interval_s": 0.1, "unhealthy_after": 1, "eject_after": 2, "ejection_s": 0.5},
        "limits": {"max_body_bytes": 65536, "max_attempts": 3},
        "api_key_file": str(root / "api.key"),
        "engine_key_file": str(root / "engine.secret"),
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("router")
    write_secret(root / "api.key", API_KEY)
    write_secret(root / "engine.secret", ENGINE_KEY)
    fleet = Fleet(root)
    for engine_id, role in (("p1", "prefill"), ("p2", "prefill"), ("d1", "decode"), ("d2", "decode")):
        fleet.add_engine(engine_id, role, api_key=ENGINE_KEY)
    fleet.add_engine("c1", "colocated", api_key=ENGINE_KEY)
    backends = [b for b in fleet.backends(8) if b["id"] != "c1"]
    fleet.start_router({"model": MODEL, "backends": backends, "routes": ROUTES, **settings(root)})
    try:
        fleet.wait()
        yield fleet
    finally:
        fleet.close()
    assert all(e.process.poll() is not None for e in fleet.engines.values()) and fleet.router.poll() is not None


def router_state(fleet: Fleet) -> dict:
    request = urllib.request.Request(fleet.url + "/admin/state", headers=ADMIN)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def healthy_fleet(fleet: Fleet) -> None:
    """Clear every fault and wait (≤ 5 s) until the router has every replica in rotation again."""
    for engine in fleet.engines.values():
        if engine.process.poll() is not None:
            engine.start()
            fleet.wait()
        engine.fault(mode=None)
    deadline = time.monotonic() + 5
    while any(v["health"] not in ("up", "removed") for v in router_state(fleet)["replicas"].values()):
        assert time.monotonic() < deadline, router_state(fleet)
        time.sleep(0.05)


def ask(fleet: Fleet, body: object = COMPLETION, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return post_json(fleet.url + "/v1/completions", body, {**AUTH, **(headers or {})}, timeout=15)


def records(fleet: Fleet) -> list[dict]:
    """Every request the engines saw, tagged with the engine's id."""
    starts = {}
    for f in (fleet.root / "records").glob("start-*.json"):
        start = json.loads(f.read_text())
        starts[start["pid"]] = start["engine_id"] or "c1"
    out = []
    for f in sorted((fleet.root / "records").glob("requests-*.jsonl")):
        engine = starts[int(f.stem.split("-")[1])]
        out += [dict(json.loads(line), engine=engine) for line in f.read_text().splitlines()]
    return out


def metric(fleet: Fleet, name: str) -> float:
    request = urllib.request.Request(fleet.url + "/metrics", headers=AUTH)
    with urllib.request.urlopen(request, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


def test_prefill_then_decode_with_kv_params_one_request_id_and_the_engine_secret(fleet: Fleet) -> None:
    for i in range(4):
        status, raw = ask(fleet, COMPLETION, {"X-Request-Id": f"req-{i}"})
        assert status == 200, raw
    seen = [r for r in records(fleet) if r["request_id"].startswith("req-")]
    for i in range(4):
        prefill, decode = sorted(
            (r for r in seen if r["request_id"] == f"req-{i}"), key=lambda r: r["engine"][0] != "p"
        )
        assert prefill["engine"] in ("p1", "p2") and decode["engine"] in ("d1", "d2")
        assert prefill["max_tokens"] == 1 and prefill["stream"] is False
        assert prefill["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False}
        kv = decode["kv_transfer_params"]
        assert kv["do_remote_prefill"] is True and kv["remote_engine_id"] == prefill["engine"]
        assert kv["remote_request_id"] == f"req-{i}" and decode["max_tokens"] == 3
        # the client's key never reaches an engine; the deployment secret does
        assert prefill["authorization"] == decode["authorization"] == f"Bearer {ENGINE_KEY}"


def test_streaming_chat_through_the_openai_client_with_the_api_key(fleet: Fleet) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=fleet.url + "/v1", api_key=API_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream]
    engine = pieces[0].split(":")[0].strip()
    assert engine in ("d1", "d2") and pieces == [f" {engine}:{i}" for i in range(5)]
    assert [m.id for m in client.models.list()] == [MODEL]


def test_doors_api_key_and_deployment_secret(fleet: Fleet) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}, ADMIN):
        status, raw = post_json(fleet.url + "/v1/completions", COMPLETION, headers)
        assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error", (headers, raw)
    with urllib.request.urlopen(fleet.url + "/health") as response:  # liveness stays open
        assert json.loads(response.read())["status"] == "ok"
    for path, headers in (("/metrics", {}), ("/v1/models", {}), ("/admin/state", AUTH)):
        try:
            urllib.request.urlopen(urllib.request.Request(fleet.url + path, headers=headers))
            raise AssertionError(f"{path} answered without the right key")
        except urllib.error.HTTPError as error:
            assert error.code == 401
    status, _ = post_json(fleet.engines["d1"].url + "/v1/completions", COMPLETION, AUTH)
    assert status == 401  # engines take only the deployment secret, not the client's key


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "the request body is not JSON"),
        (b"[" * 30_000 + b"]" * 30_000, {}, 400, "the request body is not JSON"),  # deep nesting
        (b"\xff\xfe\x00{", {}, 400, "the request body is not JSON"),
        (b'{"model": "x"}', {"Content-Type": "application/json; charset=bogus-8"}, 200, None),
        (b"[1, 2]", {}, 400, "the request body must be a JSON object"),
        (b'{"prompt": "' + b"x" * 70_000 + b'"}', {}, 413, "the request body is larger than 65536 bytes"),
    ],
)
def test_malformed_requests_are_4xx_not_500(fleet: Fleet, body, headers, status, message) -> None:
    got, raw = ask(fleet, body, headers)
    if message is None:  # a bogus charset is ignored: the body is read as bytes; the engine then judges it
        assert got in (200, 404), raw
        return
    assert got == status and json.loads(raw)["error"]["message"] == message, raw
    assert ask(fleet)[0] == 200  # and the router still serves


def test_a_wrong_model_is_the_engines_own_4xx_not_retried(fleet: Fleet) -> None:
    retries = metric(fleet, "hexgen2_router_retries_total")
    status, raw = ask(fleet, {**COMPLETION, "model": "other"})
    assert status == 404 and "does not exist" in json.loads(raw)["error"]["message"]
    assert metric(fleet, "hexgen2_router_retries_total") == retries


@pytest.mark.parametrize(
    ("engine", "fault"),
    [
        ("d1", {"mode": "error"}),
        ("d1", {"mode": "not_json"}),
        ("d1", {"mode": "cut"}),  # a non-streamed answer shorter than its Content-Length
        ("p1", {"mode": "error"}),
        ("p1", {"mode": "not_json"}),
        ("d1", {"mode": "hang", "count": 1}),  # first-byte timeout (1.5 s), then another decode
        ("p1", {"mode": "slow", "seconds": 3, "count": 1}),
    ],
)
def test_a_failing_engine_is_retried_elsewhere_and_ejected(fleet: Fleet, engine: str, fault: dict) -> None:
    retries = metric(fleet, "hexgen2_router_retries_total")
    fleet.engines[engine].fault(**fault)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ask(fleet), range(8)))
    assert [status for status, _ in answers] == [200] * 8, answers
    assert all(json.loads(raw)["choices"][0]["text"].strip().split(":")[0] in ("d1", "d2") for _, raw in answers)
    assert metric(fleet, "hexgen2_router_retries_total") > retries
    assert time.monotonic() - started < 8  # nobody waited past the hop timeouts
    if fault.get("count") is None:  # a persistent fault: ejected after 2 errors in a row
        assert metric(fleet, f'hexgen2_router_ejections_total{{replica="{engine}"}}') >= 1


def stream_text(fleet: Fleet) -> tuple[int, str, float]:
    body = json.dumps({**COMPLETION, "max_tokens": 6, "stream": True}).encode()
    request = urllib.request.Request(fleet.url + "/v1/completions", data=body, headers=AUTH)
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.read().decode(), time.monotonic() - started


@pytest.mark.parametrize("mode", ["cut", "stall"])
def test_a_stream_broken_midway_ends_with_an_error_event_never_a_silent_200(fleet: Fleet, mode: str) -> None:
    for engine in ("d1", "d2"):
        fleet.engines[engine].fault(mode=mode, after_chunks=2, count=1)
    status, text, took = stream_text(fleet)
    assert status == 200 and text.count('"text"') == 2, text  # two chunks reached the client…
    assert '"type": "upstream_error"' in text and "[DONE]" not in text  # …then the error, and no [DONE]
    assert took < 3.0  # a stall ends at the idle timeout (1 s), not never
    assert metric(fleet, "hexgen2_router_stream_cuts_total") >= 1


def test_a_stream_that_fails_before_its_first_chunk_is_retried(fleet: Fleet) -> None:
    fleet.engines["d1"].fault(mode="cut", after_chunks=0)
    for _ in range(4):
        status, text, _ = stream_text(fleet)
        assert status == 200 and text.rstrip().endswith("data: [DONE]") and " d2:" in text, text


def test_a_killed_decode_leaves_the_rotation_and_rejoins_when_back(fleet: Fleet) -> None:
    fleet.engines["d2"].kill()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ask(fleet), range(12)))
    assert [status for status, _ in answers] == [200] * 12
    with urllib.request.urlopen(fleet.url + "/health") as response:
        health = json.loads(response.read())
    assert health["status"] == "degraded" and set(health["out"]) == {"d2"}
    assert metric(fleet, 'hexgen2_router_replica_up{replica="d2"}') == 0
    fleet.engines["d2"].start()  # the same engine on the same port, as Ray's restart does
    fleet.wait()
    deadline = time.monotonic() + 5
    while router_state(fleet)["replicas"]["d2"]["health"] != "up":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    texts = [json.loads(ask(fleet)[1])["choices"][0]["text"] for _ in range(8)]
    assert any(t.startswith(" d2:") for t in texts)  # back in the rotation


def test_admin_config_switches_traffic_and_limits(fleet: Fleet) -> None:
    base = json.loads((fleet.root / "router.json").read_text())
    colocated = {**base, "backends": [b for b in fleet.backends(8) if b["id"] == "c1"], "routes": []}
    colocated["colocated_weights"] = {"c1": 1.0}
    colocated["limits"] = {**base["limits"], "max_concurrent": 1}
    assert post_json(fleet.url + "/admin/config", colocated, AUTH)[0] == 401
    bad = {**colocated, "backends": [{**colocated["backends"][0], "url": "not a url"}]}
    status, raw = post_json(fleet.url + "/admin/config", bad, ADMIN)
    assert status == 400 and "backends[0].url" in json.loads(raw)["error"]["message"]
    try:
        assert post_json(fleet.url + "/admin/config", colocated, ADMIN)[0] == 200
        status, raw = ask(fleet)
        assert status == 200 and json.loads(raw)["choices"][0]["text"].startswith(" engine-")  # c1 answered
        fleet.engines["c1"].fault(mode="slow", seconds=1.0, count=1)
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(s for s, _ in pool.map(lambda _: ask(fleet), range(2)))
        assert statuses == [200, 429]
    finally:
        assert post_json(fleet.url + "/admin/config", base, ADMIN)[0] == 200
    assert ask(fleet)[0] == 200


def test_requests_in_flight_finish_on_a_replica_a_new_config_removes(fleet: Fleet) -> None:
    base = json.loads((fleet.root / "router.json").read_text())
    without_d1 = {**base, "backends": [b for b in base["backends"] if b["id"] != "d1"]}
    without_d1["routes"] = [r for r in base["routes"] if r["target"] != "d1"]
    for engine in ("p1", "p2"):
        fleet.engines[engine].fault(mode="slow", seconds=0.5, count=3)
    try:
        with ThreadPoolExecutor(6) as pool:
            pending = [pool.submit(ask, fleet) for _ in range(6)]
            time.sleep(0.2)  # the prefills are running; half of them chose d1 for their decode
            assert post_json(fleet.url + "/admin/config", without_d1, ADMIN)[0] == 200
            answers = [f.result() for f in pending]
        assert [status for status, _ in answers] == [200] * 6
        assert router_state(fleet)["replicas"]["d1"]["health"] == "removed"
        assert all(json.loads(ask(fleet)[1])["choices"][0]["text"].startswith(" d2:") for _ in range(4))
    finally:
        assert post_json(fleet.url + "/admin/config", base, ADMIN)[0] == 200
