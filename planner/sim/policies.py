"""Decisions inside a replica, kept apart from state and time: prefill batching, admission, preemption.

(Which replicas serve a request is the router's policy, planner.sim.routing.)
- Prefill batch: FCFS while the sequences of this batch and of those still in the pipeline stay
  ≤ max_num_seqs (vLLM caps all running sequences, whichever micro-batch holds them), Σ prompt ≤
  max_num_batched_tokens (a lone long prompt still runs) and its KV fits beside the caches still
  waiting to be shipped.
- Batch-server admission (vLLM): FCFS while ≤ max_num_seqs and the new KV fits below vLLM's
  watermark (1 % of KV memory kept free for running sequences to grow into); sequences needing
  (re)compute form a prefill iteration, which runs *instead of* a decode step — the interference
  colocated replicas suffer.
- Preemption (vLLM's recompute mode): when the next step's tokens do not fit, evict the newest.
"""

from __future__ import annotations

from planner.sim.entities import BatchServer, PrefillServer, Request

WATERMARK = 0.01  # vLLM's default watermark on KV blocks


def prefill_batch(server: PrefillServer) -> list[Request]:
    batch: list[Request] = []
    tokens = 0
    queue = server.queue
    while queue and len(batch) + server.in_batch < server.max_seqs:
        prompt = queue[0].prompt
        if batch and tokens + prompt > server.max_tokens:
            break
        if server.kv_used + tokens + prompt > server.kv_capacity:
            break
        batch.append(queue.popleft())
        tokens += prompt
    return batch


def admit(server: BatchServer) -> tuple[list[Request], list[Request]]:
    """(requests to prefill now, requests whose KV is already here and join the running batch)."""
    to_prefill: list[Request] = []
    ready: list[Request] = []
    prefill_tokens = 0
    used = server.kv_used
    seqs = server.running
    waiting = server.waiting
    while waiting and seqs < server.max_seqs:
        request = waiting[0]
        need = request.prompt + max(request.generated, 1)
        if used + need > (1.0 - WATERMARK) * server.kv_capacity:
            break
        if request.needs_prefill:
            if to_prefill and prefill_tokens + request.context > server.max_tokens:
                break
            prefill_tokens += request.context
            to_prefill.append(waiting.popleft())
        else:
            ready.append(waiting.popleft())
        used += need
        seqs += 1
    return to_prefill, ready


def preempt_for_step(server: BatchServer) -> list[Request]:
    """Sequences to evict (newest first) so that one more decode step fits in KV memory."""
    evicted = []
    while server.running > 1 and server.kv_used + server.running > server.kv_capacity:
        evicted.append(server.pop_newest())
    return evicted
