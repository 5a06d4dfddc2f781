"""The router's pure parts: its config schema, the health book's transitions, the request rewriting of a hop,
and the private-file helpers that hold logs and secrets. No servers (one router process for the exit-2 check)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.errors import LaunchError
from launcher.health import HealthBook
from launcher.private import open_append, private_dir, read_secret, read_tail, write_secret
from launcher.relay import prefill_body, with_kv_params
from launcher.router_config import HealthPolicy, RouterConfig, parse_config, plan_config

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = [
    {"id": "p1", "role": "prefill", "url": "http://127.0.0.1:1", "max_outstanding": 4},
    {"id": "d1", "role": "decode", "url": "http://127.0.0.1:2", "max_outstanding": 4},
]
ROUTE = [{"source": "p1", "target": "d1", "weight": 1.0}]


# --- config ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model": "m", "backends": []}, "backends: List should have at least 1 item"),
        ({"model": "m", "backend": []}, "backend: Extra inputs are not permitted (did you mean 'backends'?)"),
        ({"schema_version": 2, "model": "m", "backends": BACKENDS}, "schema_version: Input should be 1"),
        (
            {"model": "m", "backends": [{**BACKENDS[0], "url": "http://a/b c"}], "routes": []},
            "backends[0].url: String should match pattern",
        ),
        (
            {"model": "m", "backends": BACKENDS, "routes": [{"source": "d1", "target": "p1", "weight": 1}]},
            "(top level): routes[0]: d1 → p1 is not a prefill → decode pair",
        ),
        ({"model": "m", "backends": BACKENDS, "routes": []}, "the plan routes no traffic"),
        (
            {"model": "m", "backends": BACKENDS, "routes": ROUTE, "timeouts": {"decode": {"idle_s": 0}}},
            "timeouts.decode.idle_s: Input should be greater than 0",
        ),
    ],
)
def test_a_bad_config_names_file_and_field(tmp_path: Path, config: dict, expected: str) -> None:
    with pytest.raises(LaunchError) as error:
        parse_config(json.dumps(config), tmp_path / "router.json")
    assert f"{tmp_path / 'router.json'}: {expected}" in error.value.message


def test_a_bad_config_stops_the_router_process_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    path.write_text('{"model": "m", "backend": []}')
    argv = [sys.executable, "-m", "launcher.cli", "router", str(path), "--port", "1"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, cwd=ROOT, env={**os.environ, "COLUMNS": "200"}
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "backend: Extra inputs are not permitted (did you mean 'backends'?)" in " ".join(result.stderr.split())


def test_plan_config_keeps_only_routes_between_running_replicas(catalog, hand_replica, hand_plan, tiny_cluster) -> None:
    plan = hand_plan(
        tiny_cluster,
        hand_replica(tiny_cluster, "prefill", ["a100-0/0"]),
        hand_replica(tiny_cluster, "decode", ["a100-0/1"]),
        hand_replica(tiny_cluster, "decode", ["l40-0/0"]),
    )
    prefill, d_a, d_l = sorted(plan.replicas, key=lambda r: (r.role != "prefill", r.gpus))
    every = {r.id: f"http://h:{i}" for i, r in enumerate(plan.replicas, 1)}
    full = plan_config(plan, every)
    assert {(r.source, r.target) for r in full.routes} == {(r.source, r.target) for r in plan.routes}
    assert {b.id: b.max_outstanding for b in full.backends} == {r.id: r.engine.max_num_seqs for r in plan.replicas}
    part = plan_config(plan, {k: v for k, v in every.items() if k != d_l.id}, full)
    assert [(r.source, r.target) for r in part.routes] == [(prefill.id, d_a.id)]
    assert set(part.policy().weights()) == {(prefill.id, d_a.id)}


# --- health book ------------------------------------------------------------------------------------------------
POLICY = HealthPolicy(unhealthy_after=2, healthy_after=2, eject_after=3, ejection_s=10, max_ejection_s=25)


def test_probes_take_a_replica_out_and_bring_it_back() -> None:
    book = HealthBook(["a", "b"], POLICY)
    book.probed("a", False, 0)
    assert book.down == frozenset()  # one failure is not enough
    book.probed("a", False, 1)
    assert book.down == {"a"} and book.summary() == {"a": "down", "b": "up"}
    book.probed("a", True, 2)
    assert book.down == {"a"}
    book.probed("a", True, 3)
    assert book.down == frozenset()


def test_request_errors_eject_for_a_doubling_period_until_a_probe_succeeds_after_it() -> None:
    book = HealthBook(["a"], POLICY)
    assert not book.request_failed("a", 0) and not book.request_failed("a", 0)
    book.request_succeeded("a")  # a success resets the count
    assert [book.request_failed("a", 0) for _ in range(3)] == [False, False, True]
    assert book.summary() == {"a": "ejected"} and book.ejections == 1
    book.probed("a", True, 5)
    book.probed("a", True, 9.9)
    assert book.down == {"a"}  # healthy probes, but the ejection runs until t=10
    book.probed("a", True, 10)
    assert book.down == frozenset()
    assert [book.request_failed("a", 20) for _ in range(3)] == [False, False, True]
    book.probed("a", True, 39.9)
    book.probed("a", True, 39.95)
    assert book.down == {"a"}  # second ejection in a row: 20 s
    book.probed("a", True, 40)
    assert book.down == frozenset()
    for _ in range(3):
        book.request_failed("a", 50)
    book.probed("a", True, 74)
    assert book.down == {"a"}
    book.probed("a", True, 75)  # third: 40 s, capped at 25 s
    assert book.down == frozenset()


def test_a_new_config_keeps_known_replicas_and_forgets_removed_ones() -> None:
    book = HealthBook(["a", "b"], POLICY)
    book.probed("b", False, 0)
    book.probed("b", False, 0)
    book.track(["b", "c"])
    assert set(book.replicas) == {"b", "c"} and book.down == {"b"}
    book.request_failed("gone", 0)  # a hop that outlived its replica's config is ignored
    book.probed("gone", False, 0)


# --- what a hop sends ---------------------------------------------------------------------------------------------
def test_prefill_body_asks_for_one_token_and_keeps_the_kv() -> None:
    body = {"model": "m", "prompt": "p", "max_tokens": 9, "max_completion_tokens": 9, "stream": True}
    sent = json.loads(prefill_body(body | {"stream_options": {"include_usage": True}, "min_tokens": 3}))
    assert sent == {
        "model": "m",
        "prompt": "p",
        "max_tokens": 1,
        "max_completion_tokens": 1,
        "stream": False,
        "kv_transfer_params": {"do_remote_decode": True, "do_remote_prefill": False},
    }


@pytest.mark.parametrize(
    "raw",
    [b'{"model": "m", "prompt": "p"}', b' {"a":1} \n', b"{}", '{"p": "é"}'.encode(), '{"p": 1}'.encode("utf-16")],
)
def test_kv_params_are_added_without_re_encoding_when_the_bytes_allow(raw: bytes) -> None:
    body = json.loads(raw)
    kv = {"remote_engine_id": "p1", "remote_block_ids": [1, 2]}
    out = with_kv_params(raw, body, kv)
    assert json.loads(out) == {**body, "kv_transfer_params": kv}
    if raw.strip().startswith(b"{"):
        assert out.startswith(raw.strip()[:-1])  # the client's bytes, untouched
        assert with_kv_params(raw, body, None) == raw
    else:  # UTF-16/32 bodies are re-encoded as UTF-8 JSON
        assert json.loads(with_kv_params(raw, body, None)) == body


def test_a_client_cannot_smuggle_its_own_kv_transfer_params() -> None:
    raw = b'{"prompt": "p", "kv_transfer_params": {"remote_host": "evil"}}'
    body = json.loads(raw)
    assert json.loads(with_kv_params(raw, body, {"remote_engine_id": "p1"})) == {
        "prompt": "p",
        "kv_transfer_params": {"remote_engine_id": "p1"},
    }
    assert json.loads(with_kv_params(raw, body, None)) == {"prompt": "p"}
    assert "kv_transfer_params" not in json.loads(prefill_body(body))["kv_transfer_params"]


# --- private files -------------------------------------------------------------------------------------------------
def test_secrets_and_logs_are_private_and_never_followed_through_symlinks(tmp_path: Path) -> None:
    directory = private_dir(tmp_path / "state" / "logs")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    write_secret(directory / "s", "abc")
    assert stat.S_IMODE((directory / "s").stat().st_mode) == 0o600 and read_secret(directory / "s") == "abc"
    os.chmod(directory / "s", 0o644)
    with pytest.raises(LaunchError, match="readable by other users"):
        read_secret(directory / "s")
    target = tmp_path / "victim"
    target.write_text("keep")
    (directory / "engine.log").symlink_to(target)
    with pytest.raises(LaunchError, match="cannot open for writing"):
        open_append(directory / "engine.log")
    with pytest.raises(OSError):
        read_tail(directory / "engine.log", 100)
    with pytest.raises(LaunchError, match="cannot write the secret"):
        write_secret(directory / "engine.log", "x")
    assert target.read_text() == "keep"
    (tmp_path / "link").symlink_to(tmp_path / "state")
    with pytest.raises(LaunchError, match="found a symlink"):
        private_dir(tmp_path / "link")
    fd = open_append(directory / "real.log")
    os.write(fd, b"x" * 100 + b"tail")
    os.close(fd)
    assert read_tail(directory / "real.log", 4) == "tail" and read_tail(directory / "none.log", 4) == ""


def test_router_config_round_trips_through_its_schema() -> None:
    config = RouterConfig.model_validate({"model": "m", "backends": BACKENDS, "routes": ROUTE})
    assert parse_config(config.model_dump_json(), Path("x")) == config
