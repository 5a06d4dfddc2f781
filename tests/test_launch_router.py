"""launcher.router against fake vLLM engines (no Ray): the NIXL P/D protocol, streaming, errors, metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parent / "fakes" / "fake_vllm.py"
MODEL = "llama-3.1-8b"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not healthy after {timeout} s")


def post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@dataclass
class Setup:
    url: str
    records: Path
    dead_url: str

    def requests(self) -> list[dict]:
        lines = [json.loads(line) for f in sorted(self.records.glob("requests-*.jsonl")) for line in f.open()]
        engines = {}
        for f in self.records.glob("start-*.json"):
            start = json.loads(f.read_text())
            engines[start["pid"]] = start["engine_id"] or "c1"
        pids = [int(f.stem.split("-")[1]) for f in sorted(self.records.glob("requests-*.jsonl")) for _ in f.open()]
        return [dict(line, engine=engines[pid]) for line, pid in zip(lines, pids, strict=True)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Engines p1 (prefill), d1 (decode), c1 (colocated) and a router; p1→d1 and c1 share traffic 1:1."""
    root = tmp_path_factory.mktemp("router")
    records = root / "records"
    processes, backends = [], []
    for engine_id, role in (("p1", "prefill"), ("d1", "decode"), ("c1", "colocated")):
        port = free_port()
        argv = [
            sys.executable,
            str(FAKE),
            "--record-dir",
            str(records),
            "serve",
            "m",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            MODEL,
        ]
        if role != "colocated":
            kv_role = "kv_producer" if role == "prefill" else "kv_consumer"
            argv += [
                "--kv-transfer-config",
                json.dumps({"kv_connector": "NixlConnector", "kv_role": kv_role, "engine_id": engine_id}),
            ]
        processes.append(subprocess.Popen(argv))
        backends.append({"id": engine_id, "role": role, "url": f"http://127.0.0.1:{port}", "max_outstanding": 8})
    dead = {"id": "p-dead", "role": "prefill", "url": f"http://127.0.0.1:{free_port()}", "max_outstanding": 8}
    config = {
        "model": MODEL,
        "seed": 0,
        "backends": backends,
        "colocated_weights": {"c1": 1.0},
        "routes": [{"source": "p1", "target": "d1", "weight": 1.0}],
    }
    dead_config = {
        **config,
        "backends": [dead, backends[1]],
        "colocated_weights": {},
        "routes": [{"source": "p-dead", "target": "d1", "weight": 1.0}],
    }
    urls = []
    for name, cfg in (("router.json", config), ("dead.json", dead_config)):
        (root / name).write_text(json.dumps(cfg))
        port = free_port()
        argv = [sys.executable, "-m", "launcher.cli", "router", str(root / name), "--port", str(port)]
        processes.append(subprocess.Popen(argv))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for backend, process in zip(backends, processes, strict=False):
            wait_healthy(backend["url"], process)
        for url, process in zip(urls, processes[-2:], strict=True):
            wait_healthy(url, process)
        yield Setup(urls[0], records, urls[1])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def test_prefill_then_decode_with_kv_params_and_one_request_id(setup: Setup) -> None:
    routes = []
    for i in range(4):
        status, headers, raw = post(
            setup.url + "/v1/completions",
            {"model": MODEL, "prompt": "hi", "max_tokens": 3},
            {"X-Request-Id": f"req-{i}"},
        )
        assert status == 200, raw
        assert headers["X-Request-Id"] == f"req-{i}"
        routes.append((headers["X-Hexgen2-Route"], json.loads(raw)["choices"][0]["text"]))
    assert sorted(r for r, _ in routes) == ["c1", "c1", "p1->d1", "p1->d1"]
    for route, text in routes:  # the fakes write "<engine id>:<token index>" tokens; c1 has no engine id
        assert text == " d1:0 d1:1 d1:2" if route == "p1->d1" else text.startswith(" engine-")
    seen = [r for r in setup.requests() if r["request_id"].startswith("req-")]
    for i in range(4):
        hops = [r for r in seen if r["request_id"] == f"req-{i}"]
        if len(hops) == 1:
            assert hops[0]["engine"] == "c1" and hops[0]["kv_transfer_params"] == {}
            continue
        prefill, decode = sorted(hops, key=lambda r: r["engine"] != "p1")
        assert (prefill["engine"], decode["engine"]) == ("p1", "d1")
        assert prefill["max_tokens"] == 1 and prefill["stream"] is False
        assert prefill["kv_transfer_params"] == {"do_remote_decode": True, "do_remote_prefill": False}
        kv = decode["kv_transfer_params"]
        assert kv["do_remote_prefill"] is True and kv["remote_engine_id"] == "p1" and kv["remote_block_ids"]
        assert kv["remote_request_id"] == f"req-{i}"
        assert decode["max_tokens"] == 3


def test_streaming_chat_through_openai_client(setup: Setup) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=setup.url + "/v1", api_key="unused", max_retries=0)
    engines = set()
    for _ in range(2):  # one via p1→d1, one via c1
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
        )
        pieces = [chunk.choices[0].delta.content for chunk in stream]
        engine = pieces[0].split(":")[0].strip()
        assert pieces == [f" {engine}:{i}" for i in range(5)]
        engines.add("d1" if engine == "d1" else "c1" if engine.startswith("engine-") else engine)
    assert engines == {"d1", "c1"}
    assert [m.id for m in client.models.list()] == [MODEL]


def test_metrics_health_and_errors(setup: Setup) -> None:
    status, _, raw = post(setup.url + "/v1/completions", b"{not json")
    assert status == 400 and json.loads(raw)["error"]["message"] == "the request body is not JSON"
    status, _, raw = post(setup.url + "/v1/completions", {"model": "other", "prompt": "x", "max_tokens": 1})
    assert status == 404 and "does not exist" in json.loads(raw)["error"]["message"]  # the engine's own answer
    with urllib.request.urlopen(setup.url + "/health") as response:
        assert json.loads(response.read()) == {"status": "ok", "replicas": 3}
    with urllib.request.urlopen(setup.url + "/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        metrics = response.read().decode()
    assert 'hexgen2_router_requests_total{decode="d1",prefill="p1"}' in metrics
    assert 'hexgen2_router_outstanding{replica="p1"} 0.0' in metrics
    assert "hexgen2_router_request_seconds_count" in metrics
    status, _, raw = post(setup.dead_url + "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 1})
    assert status == 502
    assert json.loads(raw)["error"]["message"].startswith("prefill replica p-dead at http://127.0.0.1:")
