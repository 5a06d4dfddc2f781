"""The simulation of one plan under one request stream: entities built from the plan, event handlers.

Request life (disaggregated): arrive → the router's choice of a prefill and a decode replica
(planner.sim.routing, the policy the launcher's router runs) → the prefill replica's queue → prefill batch
→ KV shipped over the node links (bandwidth shared by concurrent transfers) → first token (TTFT includes
the transfer: the client's first token comes from the decode replica) → decode replica's waiting queue →
continuous batching until the last token.
Colocated replicas do both phases on the same GPUs with chunked prefill: each step carries the running
sequences' decode tokens plus chunks of waiting prompts (planner.sim.policies.plan_step), so the prompts
stretch the steps the running sequences wait for.

Every time comes from the cost model (planner.costs) via ReplicaTiming / kv_parts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping

from planner.costs.memory import kv_capacity_tokens
from planner.errors import InputError
from planner.inputs.problem import Cluster, Slo
from planner.plans.assemble import layout_of
from planner.plans.schema import Plan, ReplicaPlan
from planner.sim import policies
from planner.sim.arrivals import Arrivals
from planner.sim.entities import BatchServer, Link, PrefillServer, Request
from planner.sim.events import ARRIVE, FINISH, SAMPLE, Event, run
from planner.sim.metrics import SimResult, summarise
from planner.sim.routing import NO_TRAFFIC, PlannedRouting, RoutingPolicy
from planner.sim.timing import KvPart, ReplicaTiming, kv_parts

Events = Iterable[Event]


def _kv_capacity(cluster: Cluster, replica: ReplicaPlan) -> float:
    return kv_capacity_tokens(cluster, layout_of(replica), replica.engine.max_num_batched_tokens)


def _servers(plan: Plan, cluster: Cluster) -> tuple[list[PrefillServer | BatchServer], list[BatchServer]]:
    """The replicas as servers: the front ends (prefill and colocated) and the decode replicas, each list
    indexed in replica-id order."""
    fronts: list[PrefillServer | BatchServer] = []
    decodes: list[BatchServer] = []
    for replica in sorted(plan.replicas, key=lambda r: r.id):
        timing = ReplicaTiming(cluster, layout_of(replica))
        engine, capacity = replica.engine, _kv_capacity(cluster, replica)
        limits = (engine.max_num_seqs, engine.max_num_batched_tokens, engine.max_model_len, capacity)
        if replica.role == "prefill":
            fronts.append(PrefillServer(len(fronts), replica.id, timing, *limits))
        else:
            servers = decodes if replica.role == "decode" else fronts
            servers.append(BatchServer(len(servers), replica.id, timing, *limits))
    return fronts, decodes


def _refusal(server: PrefillServer | BatchServer, request: Request) -> str:
    """Why a front-end replica refuses a request as it arrives ('' when it takes it)."""
    if request.prompt + request.output > server.max_model_len:
        return f"prompt + output > max_model_len {server.max_model_len}"
    if isinstance(server, PrefillServer):
        return "prompt larger than the prefill replica's KV memory" if request.prompt > server.kv_capacity else ""
    if request.prompt + request.output + 1 > server.kv_capacity:
        return "request larger than the replica's KV memory"
    return ""


class InFlight(Mapping[str, int]):
    """Requests in flight per front-end replica, as the router counts them (what RoutingPolicy reads)."""

    def __init__(self, servers: Mapping[str, PrefillServer | BatchServer]) -> None:
        self.servers = servers

    def __getitem__(self, replica: str) -> int:
        return self.servers[replica].outstanding

    def get(self, replica: str, default: int = 0) -> int:  # type: ignore[override]  # the hot path: no KeyError
        server = self.servers.get(replica)
        return default if server is None else server.outstanding

    def __iter__(self) -> Iterator[str]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)


class Simulation:
    """One run. Build, then `run()` once; handlers are the `_on_*` methods. `seed` sets the router's phase."""

    def __init__(
        self,
        plan: Plan,
        cluster: Cluster,
        arrivals: Arrivals,
        *,
        slo: Slo | None,
        warmup: float,
        duration: float,
        drain: float,
        seed: int = 0,
        sample_s: float = 1.0,
    ) -> None:
        self.cluster, self.arrivals, self.slo = cluster, arrivals, slo
        self.warmup, self.duration, self.until, self.sample_s = warmup, duration, duration + drain, sample_s
        self.fronts, self.decodes = _servers(plan, cluster)
        if not PlannedRouting.of(plan).routes_traffic:
            raise InputError(NO_TRAFFIC, hint="there is nothing to simulate: re-solve the cluster or check the routes")
        self.router = RoutingPolicy.for_plan(plan, seed)
        self.front_index = {f.id: f.index for f in self.fronts}
        self.decode_index = {d.id: d.index for d in self.decodes}
        self.in_flight = InFlight({f.id: f for f in self.fronts})
        self.parts: dict[tuple[int, int], tuple[KvPart, ...]] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.requests: list[Request] = []
        self.in_system = 0  # admitted, neither finished nor dropped
        self.queue_samples: list[tuple[float, int]] = []

    # ------------------------------------------------------------------ run

    def run(self) -> SimResult:
        initial = [Event(self.sample_s, SAMPLE, self._on_sample)]
        if len(self.arrivals):
            initial.append(Event(float(self.arrivals.time[0]), ARRIVE, self._on_arrive, 0))
        horizon = max(run(initial, self.until), 1e-9)  # the last event's time (≤ until)
        for link in self.links.values():
            link.advance(horizon)
        servers = [*self.fronts, *self.decodes]
        return summarise(
            self.requests,
            warmup=self.warmup,
            duration=self.duration,
            slo=self.slo,
            preemptions=sum(s.preemptions for s in servers if isinstance(s, BatchServer)),
            replica_utilisation={s.id: min(s.busy_s / horizon, 1.0) for s in sorted(servers, key=lambda s: s.id)},
            link_utilisation={f"{a}→{b}": min(x.busy_s / horizon, 1.0) for (a, b), x in sorted(self.links.items())},
            queue=self.queue_samples,
            sim_seconds=horizon,
        )

    # ------------------------------------------------------------------ arrivals and endings

    def _on_arrive(self, now: float, i: int) -> Events:
        a = self.arrivals
        request = Request(i, now, int(a.prompt[i]), int(a.output[i]))
        self.requests.append(request)
        events = [Event(float(a.time[i + 1]), ARRIVE, self._on_arrive, i + 1)] if i + 1 < len(a) else []
        first, second = self.router.choose(self.in_flight)
        request.front = self.front_index[first]
        request.decode = -1 if second is None else self.decode_index[second]
        server = self.fronts[request.front]
        request.dropped = _refusal(server, request)
        if request.dropped:
            return events
        self.in_system += 1  # before it is started: a batch server may still refuse it (policies.plan_step)
        if isinstance(server, PrefillServer):
            server.queue.append(request)
            return events + self._start_prefill(server, now)
        server.waiting.append(request)
        return events + self._start_batch(server, now)

    def _finish(self, request: Request, now: float) -> None:
        assert request.finish < 0, f"request {request.id} finished twice"
        request.finish = now
        self.in_system -= 1

    def _on_sample(self, now: float, _: object) -> Events:
        waiting = sum(len(s.queue) if isinstance(s, PrefillServer) else len(s.waiting) for s in self.fronts)
        waiting += sum(len(s.waiting) for s in self.decodes)
        self.queue_samples.append((now, waiting))
        later = max(now + self.sample_s, math.nextafter(now, math.inf))  # always later, even past 2**53 s
        pending = len(self.requests) < len(self.arrivals)  # requests[i] is arrival i: the next one is len(requests)
        if (
            pending and self.in_system == 0
        ):  # idle until the next arrival: skip the empty samples (the span can be huge)
            next_arrival = float(self.arrivals.time[len(self.requests)])
            later = max(later, math.ceil(next_arrival / self.sample_s) * self.sample_s)
        busy = pending or self.in_system > 0
        return [Event(later, SAMPLE, self._on_sample)] if later <= self.until and busy else []

    # ------------------------------------------------------------------ prefill replicas

    def _start_prefill(self, server: PrefillServer, now: float) -> Events:
        if server.busy or not server.queue:
            return []
        batch = policies.prefill_batch(server)
        if not batch:
            return []
        period, latency = server.timing.prefill([r.prompt for r in batch])
        server.busy = True
        server.busy_s += period
        server.in_batch += len(batch)
        server.kv_used += sum(r.prompt for r in batch)
        return [
            Event(now + latency, FINISH, self._on_prefilled, (server, batch)),
            Event(now + period, FINISH, self._on_prefill_free, server),
        ]

    def _on_prefill_free(self, now: float, server: PrefillServer) -> Events:
        server.busy = False
        return self._start_prefill(server, now)

    def _on_prefilled(self, now: float, payload: tuple[PrefillServer, list[Request]]) -> Events:
        server, batch = payload
        server.in_batch -= len(batch)
        events: list[Event] = []
        for request in batch:
            request.generated = 1
            if request.output <= 1:
                request.first_token = now
                self._finish(request, now)
            else:
                decode = self.decodes[request.decode]
                if request.prompt + request.output > min(decode.max_model_len, decode.kv_capacity - 1):
                    request.dropped = f"request does not fit decode replica {decode.id}"
                    self.in_system -= 1
                else:
                    events += self._ship(now, server, request)
                    continue
            server.kv_used -= request.prompt
        # the batch left the pipeline (max_num_seqs counts it no more) and may have freed KV: the next may start
        return events + self._start_prefill(server, now)

    # ------------------------------------------------------------------ KV transfer

    def _ship(self, now: float, server: PrefillServer, request: Request) -> Events:
        key = (server.index, request.decode)
        parts = self.parts.get(key)
        if parts is None:
            decode = self.decodes[request.decode]
            parts = self.parts[key] = kv_parts(self.cluster, server.timing.layout, decode.timing.layout)
        request.parts_left = len(parts)
        request.kv_latency = max(p.latency for p in parts)
        events = []
        for part in parts:
            link = self.links.get(part.key)
            if link is None:
                link = self.links[part.key] = Link(part.key, self.cluster.node_bandwidth(*part.key), part.latency)
            # a part with parallel streams (intra-node) moves proportionally fewer bytes of link time
            link.add(now, request, request.prompt * part.bytes_per_token * link.bandwidth / part.bandwidth)
            events.append(Event(link.next_finish(), FINISH, self._on_link, (link, link.version)))
        return events

    def _on_link(self, now: float, payload: tuple[Link, int]) -> Events:
        link, version = payload
        if version != link.version:
            return []
        events = []
        for request in link.pop_finished(now):
            request.parts_left -= 1
            if request.parts_left == 0:
                events.append(Event(now + request.kv_latency, FINISH, self._on_kv_arrived, request))
        if link.flows:
            events.append(Event(link.next_finish(), FINISH, self._on_link, (link, link.version)))
        return events

    def _on_kv_arrived(self, now: float, request: Request) -> Events:
        prefill = self.fronts[request.front]
        assert isinstance(prefill, PrefillServer)
        prefill.kv_used -= request.prompt
        decode = self.decodes[request.decode]
        request.needs_prefill = False
        request.kv_arrived = now
        request.first_token = (
            now  # the client's first token comes from the decode replica: TTFT includes the KV transfer
        )
        decode.waiting.append(request)
        return [*self._start_batch(decode, now), *self._start_prefill(prefill, now)]

    # ------------------------------------------------------------------ decode and colocated replicas

    def _start_batch(self, server: BatchServer, now: float) -> Events:
        """The next engine step: running decodes plus prefill chunks (planner.sim.policies.plan_step)."""
        if server.busy:
            return []
        ready, started, chunks, refused = policies.plan_step(server)
        for request in refused:
            request.dropped = "request larger than the replica's KV memory below vLLM's watermark"
            self.in_system -= 1
        for request in ready:
            server.join(request)
        for request in started:
            request.prefilled = 0
            request.reserved = request.prompt + max(request.generated, 1)
            server.reserved += request.reserved
            server.prefilling.append(request)
        if not server.running and not chunks:
            return []
        for request in policies.preempt_for_step(server):
            request.needs_prefill = True
            request.preemptions += 1
            server.preemptions += 1
            server.waiting.appendleft(request)
        if chunks:
            tokens = sum(take for _, take in chunks)
            squares = sum((r.prefilled + take) ** 2 - r.prefilled**2 for r, take in chunks)
            step = server.timing.mixed_step(server.running, server.mean_context, tokens, squares, len(chunks))
        else:
            step = server.timing.decode_step(server.running, server.mean_context)
        server.busy = True
        server.busy_s += step
        return [Event(now + step, FINISH, self._on_stepped, (server, chunks))]

    def _on_stepped(self, now: float, payload: tuple[BatchServer, list[tuple[Request, int]]]) -> Events:
        server, chunks = payload
        server.step += 1
        server.busy = False
        for request in server.pop_done():
            self._finish(request, now)
        for request, take in chunks:
            request.prefilled += take
            if request.prefilled < request.context:
                continue
            server.prefilling.remove(request)
            server.reserved -= request.reserved
            if request.first_token < 0:
                request.first_token, request.generated = now, 1
            if request.generated >= request.output:
                self._finish(request, now)
            else:
                server.join(request)
        return self._start_batch(server, now)
