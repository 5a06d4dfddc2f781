"""What the simulator moves around: requests, KV links, and the two kinds of replica servers.

Entities hold state and small state-keeping methods only; *when* things happen is decided
by the engine's handlers, *which* replica serves a request by the router's policy (planner.sim.routing),
and batching, admission and preemption by planner.sim.policies.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from planner.sim.timing import ReplicaTiming


@dataclass(slots=True, eq=False)
class Request:
    id: int
    arrival: float
    prompt: int
    output: int
    front: int = -1  # index of the prefill or colocated server it entered by
    decode: int = -1  # index of the decode server (disaggregated plans)
    first_token: float = -1.0
    kv_arrived: float = -1.0  # when its KV cache reached the decode replica (disaggregated plans)
    finish: float = -1.0
    dropped: str = ""  # why it was refused; empty when admitted
    generated: int = 0  # output tokens produced so far (the prefill makes the first)
    preemptions: int = 0
    needs_prefill: bool = True  # a batch server must (re)compute its KV before decoding it
    prefilled: int = 0  # tokens of its context computed so far by chunked prefill on a batch server
    reserved: int = 0  # KV tokens a batch server holds for it while it is prefilled
    # decode bookkeeping while running on a batch server (see BatchServer)
    run_token: int = 0
    join_step: int = 0
    join_context: int = 0
    join_generated: int = 0
    # KV transfer in flight: parts (links) still busy, and the slowest part's latency
    parts_left: int = 0
    kv_latency: float = 0.0

    @property
    def context(self) -> int:
        return self.prompt + self.generated


@dataclass(slots=True, eq=False)
class Link:
    """A directed node→node path; concurrent transfers share its bandwidth equally (processor sharing).

    Kept in virtual time: `virtual` is the bytes every active flow has received so far, so a
    flow of size s added at virtual v finishes when virtual reaches v + s. O(log n) per change.
    """

    key: tuple[str, str]
    bandwidth: float
    latency: float
    active: int = 0
    virtual: float = 0.0
    updated: float = 0.0
    version: int = 0
    flows: list[tuple[float, int, Request]] = field(default_factory=list)
    busy_s: float = 0.0

    def advance(self, now: float) -> None:
        if self.active:
            self.virtual += (now - self.updated) * self.bandwidth / self.active
            self.busy_s += now - self.updated
        self.updated = now

    def add(self, now: float, request: Request, nbytes: float) -> None:
        self.advance(now)
        heapq.heappush(self.flows, (self.virtual + nbytes, request.id, request))
        self.active += 1
        self.version += 1

    def pop_finished(self, now: float) -> list[Request]:
        self.advance(now)
        done = []
        # a flow that needs less than one representable tick of `now` is done: at huge times (a trace spanning
        # centuries) it would otherwise be rescheduled at `now` forever
        tick_bytes = math.ulp(now) * self.bandwidth / max(self.active, 1)
        tolerance = max(1e-9 * max(self.virtual, 1.0), tick_bytes)
        while self.flows and self.flows[0][0] <= self.virtual + tolerance:
            done.append(heapq.heappop(self.flows)[2])
            self.active -= 1
        self.version += 1
        return done

    def next_finish(self) -> float:
        return self.updated + (self.flows[0][0] - self.virtual) * self.active / self.bandwidth


@dataclass(slots=True, eq=False)
class PrefillServer:
    """A disaggregated prefill replica: FCFS batches; a prompt's KV stays until it is shipped."""

    index: int
    id: str
    timing: ReplicaTiming
    max_seqs: int
    max_tokens: int
    max_model_len: int
    kv_capacity: float
    queue: deque[Request] = field(default_factory=deque)
    busy: bool = False
    in_batch: int = 0
    kv_used: float = 0.0
    busy_s: float = 0.0

    @property
    def outstanding(self) -> int:
        return len(self.queue) + self.in_batch


@dataclass(slots=True, eq=False)
class BatchServer:
    """A decode or colocated replica running continuous batching with chunked prefill (vLLM's engine):
    each step carries one decode token per running sequence plus chunks of the prompts being prefilled,
    up to max_tokens tokens in all (planner.costs.chunked times it). Prompts being prefilled hold their
    KV reservation in `reserved`.

    Running sequences are kept in O(1) aggregate form: with step counter k, a sequence that
    joined at step j with context c has context c + (k − j), so Σ context = S + n·k where
    S = Σ(c − j). Completions are a heap keyed by the step at which each sequence is done;
    preemption (vLLM's recompute mode) takes the most recently admitted sequence (a stack).
    Heap and stack entries carry the request's run_token, which leave() moves on, so the entries of a
    sequence that left (finished or preempted) go stale.
    """

    index: int
    id: str
    timing: ReplicaTiming
    max_seqs: int
    max_tokens: int
    max_model_len: int
    kv_capacity: float
    waiting: deque[Request] = field(default_factory=deque)
    busy: bool = False
    step: int = 0
    running: int = 0
    context_base: int = 0  # S
    reserved: int = 0  # KV tokens held for the prompts being prefilled
    prefilling: list[Request] = field(default_factory=list)  # admitted, prefill not finished (FCFS)
    done_heap: list[tuple[int, int, int, Request]] = field(default_factory=list)
    stack: list[tuple[Request, int]] = field(default_factory=list)
    busy_s: float = 0.0
    preemptions: int = 0

    @property
    def kv_used(self) -> int:
        return self.context_base + self.running * self.step + self.reserved

    @property
    def outstanding(self) -> int:
        return len(self.waiting) + self.running + len(self.prefilling)

    @property
    def mean_context(self) -> int:
        """Mean context of the running sequences (whole tokens), what a decode step reads."""
        return round((self.context_base + self.running * self.step) / self.running) if self.running else 0

    def join(self, request: Request) -> None:
        request.join_step = self.step
        request.join_context = request.context
        request.join_generated = request.generated
        self.context_base += request.context - self.step
        self.running += 1
        done_at = self.step + request.output - request.generated
        heapq.heappush(self.done_heap, (done_at, request.id, request.run_token, request))
        self.stack.append((request, request.run_token))

    def leave(self, request: Request) -> None:
        request.generated = request.join_generated + self.step - request.join_step
        self.context_base -= request.join_context - request.join_step
        self.running -= 1
        request.run_token += 1  # its heap and stack entries go stale

    def pop_done(self) -> list[Request]:
        done = []
        heap = self.done_heap
        while heap and heap[0][0] <= self.step:
            _, _, token, request = heapq.heappop(heap)
            if token == request.run_token:
                self.leave(request)
                done.append(request)
        return done

    def pop_newest(self) -> Request:
        while True:
            request, token = self.stack.pop()
            if token == request.run_token:
                self.leave(request)
                return request
