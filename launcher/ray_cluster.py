"""Reaching a Ray cluster (or starting a one-machine head), and the small network probes the launcher needs.

Ray is imported inside the functions, so the CLI and the planner start without it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from launcher import state as st
from launcher.errors import LaunchError
from launcher.nodes import GPU_LABEL, NODE_LABEL
from launcher.private import open_append
from launcher.process_actor import ProcessRecord, start_time

Report = Callable[[str], None]


def require_ray() -> ModuleType:
    """Ray comes with the optional `[launch]` extra; without it, say how to get it instead of a traceback."""
    try:
        import ray
    except ModuleNotFoundError as exc:
        raise LaunchError(
            f"this command needs Ray, which is not installed here ({exc}).", hint="pip install 'hexgen2[launch]'"
        ) from None
    return ray


def connect(address: str | None) -> None:
    """Join the Ray cluster; an unreachable address is a LaunchError (a quick TCP probe first: `ray.init`
    retries an unreachable host:port for minutes before failing)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    hint = "check --address (or RAY_ADDRESS, or the address in the state file) and that Ray runs there"
    host, colon, port = (address or "").removeprefix("ray://").rpartition(":")
    if colon and port.isdigit() and not port_open(host.strip("[]"), int(port), timeout_s=5.0):
        raise LaunchError(f"cannot reach the Ray cluster at {address}: no answer on port {port}.", hint=hint)
    try:
        ray.init(address=address, namespace=st.NAMESPACE, log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise LaunchError(f"cannot reach the Ray cluster at {address or 'auto'}: {exc}", hint=hint) from None


def start_local_ray(
    plan_nodes: Sequence[tuple[str, str]], state_dir: Path, report: Report
) -> tuple[str, st.ProcessState]:
    """A one-machine Ray head labelled as the plan's single node; (address, what proves the head is ours)."""
    if len(plan_nodes) != 1:
        names = ", ".join(n for n, _ in plan_nodes)
        raise LaunchError(
            f"no Ray cluster given and the plan spans {len(plan_nodes)} nodes ({names}); a local Ray is one machine.",
            hint="start Ray on every node with the labels in the README and pass --address (or set RAY_ADDRESS)",
        )
    (name, gpu_type), port = plan_nodes[0], free_port()
    ray_exe = Path(sys.executable).with_name("ray")
    argv = [
        str(ray_exe),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--labels={NODE_LABEL}={name},{GPU_LABEL}={gpu_type}",
    ]
    log = open_append(state_dir / "local-ray.log")
    try:
        head = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        os.close(log)
    record = st.ProcessState(pid=head.pid, start_time=start_time(head.pid) or 0, argv0=argv[0])
    report(f"started a local Ray head (pid {head.pid}, port {port}) labelled {name}/{gpu_type}")
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if head.poll() is not None or time.monotonic() > deadline:
            raise LaunchError(f"the local Ray head did not start; see {state_dir / 'local-ray.log'}.")
        time.sleep(0.5)
    return f"127.0.0.1:{port}", record


def proven(record: st.ProcessState) -> ProcessRecord:
    return ProcessRecord(record.pid, record.start_time, record.argv0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def healthy(url: str, timeout_s: float = 2.0, secret: str | None = None, path: str = "/health") -> bool:
    """Whether `url` answers `path` with 200. With the deployment secret and a guarded path (the router's
    /admin/state, an engine's /v1/models) a 200 also proves it is *our* process on that port, not another
    server that happened to hold it."""
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers), timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
