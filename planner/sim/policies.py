"""Decisions inside a replica, kept apart from state and time: prefill batching, admission, preemption.

(Which replicas serve a request is the router's policy, planner.sim.routing.)
- Prefill batch: FCFS while the sequences of this batch and of those still in the pipeline stay
  ≤ max_num_seqs (vLLM caps all running sequences, whichever micro-batch holds them), Σ prompt ≤
  max_num_batched_tokens (a lone long prompt still runs) and its KV fits beside the caches still
  waiting to be shipped.
- Batch-server step (vLLM's scheduler with chunked prefill): every running sequence decodes one token;
  the rest of the max_num_batched_tokens budget goes to prompts being prefilled, first those already
  started, then new ones from the waiting queue, FCFS, while ≤ max_num_seqs and the new KV fits below
  vLLM's watermark (1 % of KV memory kept free for running sequences to grow into); one whose KV alone could
  never fit below it is refused, as vLLM ignores it (else it would block the queue for ever). Sequences whose KV
  is already here (shipped by a prefill replica) join the running batch directly. A chunk stretches the
  step every running sequence waits for — the interference colocated replicas suffer.
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


def plan_step(
    server: BatchServer,
) -> tuple[list[Request], list[Request], list[tuple[Request, int]], list[Request]]:
    """(requests joining the running batch, requests starting prefill, (request, tokens) prefill chunks, requests
    refused: their KV alone exceeds the memory below the watermark, so vLLM ignores them (AllocStatus.NEVER))."""
    ready: list[Request] = []
    started: list[Request] = []
    chunks: list[tuple[Request, int]] = []
    refused: list[Request] = []
    room = (1.0 - WATERMARK) * server.kv_capacity
    budget = server.max_tokens - server.running
    for request in server.prefilling:
        if budget <= 0:
            break
        take = min(request.context - request.prefilled, budget)
        chunks.append((request, take))
        budget -= take
    used = server.kv_used
    seqs = server.running + len(server.prefilling)
    waiting = server.waiting
    while waiting and seqs < server.max_seqs:
        request = waiting[0]
        need = request.prompt + max(request.generated, 1)
        if need > room:
            refused.append(waiting.popleft())
            continue
        if used + need > room:
            break
        if request.needs_prefill:
            if budget <= 0:
                break
            take = min(request.context, budget)
            started.append(waiting.popleft())
            chunks.append((request, take))
            budget -= take
        else:
            if budget <= 0:
                break
            ready.append(waiting.popleft())
            budget -= 1
        used += need
        seqs += 1
    return ready, started, chunks, refused


def preempt_for_step(server: BatchServer) -> list[Request]:
    """Sequences to evict (newest first) so that one more decode step fits in KV memory."""
    evicted = []
    while server.running > 1 and server.kv_used + server.running > server.kv_capacity:
        evicted.append(server.pop_newest())
    return evicted
