"""Fake vLLM engines and a router as local processes on 127.0.0.1, for the router tests and the benchmark.

`Fleet` starts each fake engine (`fake_vllm.py`) and the router (`hexlaunch router CONFIG`) as a child
process, waits for their /health, and on `close()` terminates them (SIGKILL after 5 s) and waits, so a
test or benchmark leaves nothing running. Engines are named p*, d*, c* by role.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

FAKE = Path(__file__).resolve().parent / "fake_vllm.py"
ROOT = Path(__file__).resolve().parents[2]
MODEL = "llama-3.1-8b"
KV_ROLE = {"prefill": "kv_producer", "decode": "kv_consumer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status in (200, 503):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not healthy after {timeout} s")


def post_json(url: str, body: object, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Engine:
    id: str
    role: str
    port: int
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def fault(self, **fault: object) -> None:
        status, raw = post_json(self.url + "/fake/fault", fault)
        assert status == 200, raw


@dataclass
class Fleet:
    root: Path
    engines: dict[str, Engine] = field(default_factory=dict)
    router: subprocess.Popen | None = None
    router_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def add_engine(self, engine_id: str, role: str, *extra: str, api_key: str | None = None) -> Engine:
        port = free_port()
        argv = [sys.executable, str(FAKE), "--record-dir", str(self.root / "records"), "serve", "m"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", MODEL, *extra]
        if role != "colocated":
            config = {"kv_connector": "NixlConnector", "kv_role": KV_ROLE[role], "engine_id": engine_id}
            argv += ["--kv-transfer-config", json.dumps(config)]
        env = {**os.environ, **({"VLLM_API_KEY": api_key} if api_key else {})}
        engine = Engine(engine_id, role, port, argv, env)
        engine.start()
        self.engines[engine_id] = engine
        return engine

    def backends(self, max_outstanding: int = 256) -> list[dict[str, object]]:
        return [
            {"id": e.id, "role": e.role, "url": e.url, "max_outstanding": max_outstanding}
            for e in self.engines.values()
        ]

    def start_router(self, config: dict[str, object]) -> None:
        path = self.root / "router.json"
        path.write_text(json.dumps(config))
        self.router_port = free_port()
        argv = [sys.executable, "-m", "launcher.cli", "router", str(path), "--port", str(self.router_port)]
        self.router = subprocess.Popen(argv, cwd=ROOT)

    def wait(self) -> None:
        for engine in self.engines.values():
            assert engine.process is not None
            wait_healthy(engine.url, engine.process)
        if self.router is not None:
            wait_healthy(self.url, self.router)

    def close(self) -> None:
        processes = [e.process for e in self.engines.values() if e.process] + [self.router] * (self.router is not None)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
