"""Router throughput and overhead, and client-visible failures when an engine dies under load.

    .venv/bin/python benchmarks/router_failover.py [--concurrency 200] [--seconds 8] [--requests 6000]

Everything runs on 127.0.0.1 with fake vLLM engines (tests/fakes/fake_vllm.py: no model, answers at once
unless --delay-ms): two prefill and two decode engines, one router (`hexlaunch router`).
1. Throughput, closed loop at --concurrency: requests/s and latency p50/p99 through the router, against a
   client doing both hops itself (prefill, then decode with the prefill's kv_transfer_params, same
   round robin); router, engine and client CPU per request from /proc. In a closed loop latency is mostly
   queueing (concurrency / throughput), so the router's overhead is also measured open loop: --rate
   requests/s for half as long, each client, and overhead = router − direct at p50 and p99.
2. Failover: --requests requests at --concurrency with a per-request engine delay; one of the two decode
   engines (then, in a fresh fleet, one of the two prefill engines) is SIGKILLed when a third of the
   requests are done. Prints failures the client saw, and the longest any client waited.
The load generator shares the machine's cores with the router and the engines: numbers are for this
machine at its load (printed), not a property of the router alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fakes"))
from fleet import MODEL, Fleet

BODY = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 4}
PREFILL_KV = {"do_remote_decode": True, "do_remote_prefill": False}


def start_fleet(root: Path, delay_ms: float) -> Fleet:
    fleet = Fleet(root)
    extra = ("--no-record", "--delay-ms", str(delay_ms))
    for engine_id, role in (("p1", "prefill"), ("p2", "prefill"), ("d1", "decode"), ("d2", "decode")):
        fleet.add_engine(engine_id, role, *extra)
    routes = [{"source": p, "target": d, "weight": 1.0} for p in ("p1", "p2") for d in ("d1", "d2")]
    fleet.start_router({"model": MODEL, "backends": fleet.backends(), "routes": routes, "health": {"interval_s": 0.5}})
    fleet.wait()
    return fleet


async def via_router(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.post(url + "/v1/completions", json=BODY) as answer:
        body = await answer.read()
        return answer.status == 200 and b'"choices"' in body


def direct_client(fleet: Fleet):
    pairs = itertools.cycle([(p, d) for p in ("p1", "p2") for d in ("d1", "d2")])

    async def both_hops(session: aiohttp.ClientSession, _url: str) -> bool:
        p, d = next(pairs)
        prefill = {**BODY, "max_tokens": 1, "stream": False, "kv_transfer_params": PREFILL_KV}
        async with session.post(fleet.engines[p].url + "/v1/completions", json=prefill) as answer:
            kv = (await answer.json())["kv_transfer_params"]
        async with session.post(fleet.engines[d].url + "/v1/completions", json={**BODY, "kv_transfer_params": kv}) as a:
            body = await a.read()
            return a.status == 200 and b'"choices"' in body

    return both_hops


async def load(one, url: str, concurrency: int, *, seconds: float = 0, requests: int = 0, on_progress=None):
    """Closed loop: `concurrency` workers; stop after `seconds` (after a 1 s warm-up) or `requests` in all."""
    latencies: list[float] = []
    failures = 0
    issued = itertools.count()
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        warm_until = time.perf_counter() + (1.0 if seconds else 0.0)
        stop_at = warm_until + seconds if seconds else float("inf")

        async def worker() -> None:
            nonlocal failures
            while True:
                n = next(issued)
                if (requests and n >= requests) or time.perf_counter() >= stop_at:
                    return
                start = time.perf_counter()
                try:
                    ok = await one(session, url)
                except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                    ok = False
                if start >= warm_until:
                    latencies.append(time.perf_counter() - start)
                    failures += not ok
                if on_progress is not None:
                    on_progress(len(latencies))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - max(began, warm_until)
    return np.array(latencies), failures, elapsed


def run(coroutine):
    """asyncio.run on uvloop when installed (the `launch` extra has it), as the router and the fakes use."""
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


async def paced(one, url: str, rate: float, seconds: float) -> np.ndarray:
    """Open loop: a request every 1/rate s for `seconds` (after 1 s of warm-up), whatever the answers do;
    latencies of the measured ones. Below saturation the difference between two clients is what a hop adds."""
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), connector=connector) as session:

        async def timed(measured: bool) -> None:
            start = time.perf_counter()
            await one(session, url)
            if measured:
                latencies.append(time.perf_counter() - start)

        began, tasks = time.perf_counter(), []
        for i in range(int(rate * (seconds + 1))):
            await asyncio.sleep(max(0.0, began + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(timed(i >= rate)))
        await asyncio.gather(*tasks, return_exceptions=True)
    return np.array(latencies)


def cpu_seconds(pid: int, kinds: tuple[int, ...] = (11, 12)) -> float:
    """User + system CPU seconds of a process (fields utime, stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[k]) for k in kinds) / os.sysconf("SC_CLK_TCK")


def throughput(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), 0.0)
        try:
            rows = []
            pids = {"router": [fleet.router.pid], "engines": [e.process.pid for e in fleet.engines.values()]}
            sys_before = cpu_seconds(fleet.router.pid, (12,))
            for name, one in (("direct (client does both hops)", direct_client(fleet)), ("through router", via_router)):
                before = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()} | {"client": time.process_time()}
                lat, failures, elapsed = run(load(one, fleet.url, args.concurrency, seconds=args.seconds))
                after = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()} | {"client": time.process_time()}
                cpu = {k: (after[k] - before[k]) / len(lat) for k in after}
                rows.append((name, len(lat) / elapsed, *np.percentile(lat, [50, 99]) * 1e3, failures, cpu))
            open_loop = [
                np.percentile(run(paced(one, fleet.url, args.rate, args.seconds / 2)), [50, 99]) * 1e3
                for one in (direct_client(fleet), via_router)
            ]
            kernel_share = (cpu_seconds(fleet.router.pid, (12,)) - sys_before) / (cpu["router"] * len(lat))
        finally:
            fleet.close()
    print(f"\n## Throughput at {args.concurrency} concurrent, {args.seconds:g} s each (load {os.getloadavg()[0]:.2f})")
    print(
        f"{'client':34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}   CPU µs/request: router engines client"
    )
    for name, rps, p50, p99, failed, cpu in rows:
        used = " ".join(f"{cpu[k] * 1e6:7.0f}" for k in ("router", "engines", "client"))
        print(f"{name:34} {rps:8.0f} {p50:8.2f} {p99:8.2f} {failed:7d}   {used}")
    print(f"(the router's CPU time is {100 * kernel_share:.0f} % in the kernel: loopback TCP)")
    (_, _, d50, d99, _, _), (_, _, r50, r99, _, _) = rows
    print(f"closed loop, router − direct: p50 {r50 - d50:+.2f} ms, p99 {r99 - d99:+.2f} ms (queueing included)")
    (o50, o99), (q50, q99) = open_loop
    print(
        f"open loop at {args.rate:g} req/s: direct p50 {o50:.2f} / p99 {o99:.2f} ms, router p50 {q50:.2f} / "
        f"p99 {q99:.2f} ms → router overhead p50 {q50 - o50:+.2f} ms, p99 {q99 - o99:+.2f} ms"
    )


def failover(args: argparse.Namespace, victim: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = start_fleet(Path(tmp), args.delay_ms)
        killed_at: list[float] = []

        def progress(done: int) -> None:
            if not killed_at and done >= args.requests // 3:
                fleet.engines[victim].kill()
                killed_at.append(time.monotonic())

        try:
            lat, failures, elapsed = run(
                load(via_router, fleet.url, args.concurrency, requests=args.requests, on_progress=progress)
            )
            with urllib_open(fleet.url + "/metrics") as page:
                metrics = [line for line in page.read().decode().splitlines() if _interesting(line)]
        finally:
            fleet.close()
    share = 100 * failures / len(lat)
    print(
        f"{victim} SIGKILLed: {len(lat)} requests, {failures} failed ({share:.2f} %), "
        f"longest wait {lat.max():.2f} s, p99 {np.percentile(lat, 99) * 1e3:.1f} ms, {len(lat) / elapsed:.0f} req/s"
    )
    for line in metrics:
        print("   ", line)


def urllib_open(url: str):
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def _interesting(line: str) -> bool:
    names = ("retries_total", "ejections_total", "timeouts_total", "failed_total", "errors_total")
    return not line.startswith("#") and any(n in line for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="engine service time in the failover runs")
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop rate for the overhead percentiles")
    parser.add_argument("--skip-failover", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")
    throughput(args)
    if not args.skip_failover:
        print(f"\n## Failover: {args.requests} requests at {args.concurrency} concurrent, engines {args.delay_ms:g} ms")
        for victim in ("d1", "p1"):
            failover(args, victim)
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
