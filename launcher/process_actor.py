"""The Ray actor that owns one OS process (an engine, or the router) on its node, and restarts it through Ray.

Why an actor per process: Ray places it (placement group bundle or node affinity), names it so any
shell can reach it (`hexlaunch status/logs/stop`), and restarts it: the actor is created with
`max_restarts`, and once the launcher has seen its process healthy (`arm`), a process that exits on
its own makes the actor exit too, so Ray starts a new actor, whose constructor starts a new process
on the same GPUs and port; the router's health checks bring it back into the rotation. Before `arm`
an exit is reported (`state`) rather than restarted, so a launch with a bad flag fails at once.

Proof of ownership: each process is started in its own session (process group), and its pid with the
kernel's start time (`/proc/PID/stat` field 22) is written to `<name>.pid` beside its log. A restarted
actor, or `stop`, signals a recorded group only if that pid still has that start time — a recycled pid
is never signalled. Logs live under the deployment's state directory (same path on every node),
0700/0600, opened with O_NOFOLLOW (`launcher.private`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from launcher.private import open_append, private_dir, read_tail

STOP_GRACE_S = 20.0
RESTART_EXIT_CODE = 75  # the actor's own exit, asking Ray for a restart


@dataclass(frozen=True)
class ProcessRecord:
    """What proves a process is the one we started: pid, kernel start time, and the command."""

    pid: int
    start_time: int
    argv0: str

    def alive_and_ours(self) -> bool:
        """True only if `pid` runs now with the start time we recorded, as its own group's leader."""
        if self.pid <= 1:
            return False
        started = start_time(self.pid)
        return started is not None and started == self.start_time and os.getpgid(self.pid) == self.pid


def start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` in clock ticks since boot (None if there is no such live process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields after the command name start at field 3
    return None if fields[0] == "Z" else int(fields[19])  # a zombie has exited; field 22 is the start time


def write_record(path: Path, record: ProcessRecord) -> None:
    fd = open_append(path.with_suffix(".tmp"))
    os.ftruncate(fd, 0)
    with os.fdopen(fd, "w") as file:
        json.dump({"pid": record.pid, "start_time": record.start_time, "argv0": record.argv0}, file)
    os.replace(path.with_suffix(".tmp"), path)


def read_record(path: Path) -> ProcessRecord | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd) as file:
        try:
            data = json.load(file)
            return ProcessRecord(int(data["pid"]), int(data["start_time"]), str(data["argv0"]))
        except (ValueError, KeyError, TypeError):
            return None


def stop_group(record: ProcessRecord, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM the recorded process group, SIGKILL it after `grace_s`; False if it is not provably ours."""
    if not record.alive_and_ours():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    for _ in range(int(grace_s * 10)):
        if start_time(record.pid) != record.start_time:
            return True
        threading.Event().wait(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)
    return True


class ProcessActor:
    """Owns one OS process on its node (wrapped by `ray.remote` at launch; a plain class so it imports cheaply)."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: str) -> None:
        self.name, self.argv, self.env = name, list(argv), dict(env)
        directory = private_dir(Path(log_dir))
        stem = name.replace("/", "_")
        self.log_path = directory / f"{stem}.log"
        self.record_path = directory / f"{stem}.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.armed = False
        self.stopping = False
        self.restarts = 0
        if self._reconstructed():  # Ray restarted us after the process died: clean up, start again
            previous = read_record(self.record_path)
            if previous is not None:
                stop_group(previous, grace_s=5.0)
            self.armed = True
            self.start()

    @staticmethod
    def _reconstructed() -> bool:
        ray = sys.modules.get("ray")  # inside an actor Ray is loaded; outside (tests of the class) it is not
        return (
            ray is not None and ray.is_initialized() and bool(ray.get_runtime_context().was_current_actor_reconstructed)
        )

    def start(self) -> int:
        log = open_append(self.log_path)
        try:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            os.close(log)
        write_record(self.record_path, ProcessRecord(self.process.pid, start_time(self.process.pid) or 0, self.argv[0]))
        threading.Thread(target=self._watch, args=(self.process,), daemon=True).start()
        return self.process.pid

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        """When an armed process exits on its own, end this actor so Ray restarts it (and the process)."""
        code = process.wait()
        if self.armed and not self.stopping and process is self.process:
            fd = open_append(self.log_path)
            os.write(fd, f"\n[hexlaunch] process exited with code {code}; asking Ray to restart {self.name}\n".encode())
            os.close(fd)
            os._exit(RESTART_EXIT_CODE)

    def arm(self) -> bool:
        """From now on an exit restarts the process (called once the launcher saw it healthy)."""
        self.armed = True
        return True

    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def state(self) -> str:
        if self.process is None:
            return "not started"
        code = self.process.poll()
        return "running" if code is None else f"exited ({code})"

    def logs(self, max_bytes: int = 20_000) -> str:
        return read_tail(self.log_path, max_bytes)

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace_s`; returns the exit code."""
        self.stopping = True
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # children the engine left in its group
        self.record_path.unlink(missing_ok=True)
        return self.process.returncode
