"""planner.sim.policies at its edges, on bare servers (no timing needed): a token budget spent exactly stops the step
(no empty chunks), a started prompt resumes where it stopped, sequences joining with their KV cost one token of
budget, a preempted sequence needs its generated tokens back, the prefill pipeline's sequences count against
max_num_seqs, and a request whose KV could never fit below vLLM's watermark is refused rather than waited for.
Each expectation is counted by hand in the test's docstring."""

from __future__ import annotations

from planner.sim.entities import BatchServer, PrefillServer, Request
from planner.sim.policies import plan_step, prefill_batch


def request(i: int, prompt: int = 100, output: int = 10, generated: int = 0, needs_prefill: bool = True) -> Request:
    r = Request(i, 0.0, prompt, output)
    r.generated, r.needs_prefill = generated, needs_prefill
    return r


def batch_server(capacity: float = 100_000, max_seqs: int = 8, max_tokens: int = 4096) -> BatchServer:
    return BatchServer(0, "d", None, max_seqs, max_tokens, 100_000, capacity)  # type: ignore[arg-type]


def step(server: BatchServer):
    """(ready, started, chunks as (id, tokens), refused ids) of one plan_step."""
    ready, started, chunks, refused = plan_step(server)
    return [r.id for r in ready], [r.id for r in started], [(r.id, n) for r, n in chunks], [r.id for r in refused]


def prefilling(server: BatchServer, *requests: Request) -> None:
    for r in requests:
        server.prefilling.append(r)


def test_a_budget_spent_exactly_stops_the_step() -> None:
    """300 tokens: a started 300-token prompt takes them all; the other started prompt and the waiting ones get no
    chunk this step (not an empty one)."""
    server = batch_server(max_tokens=300)
    prefilling(server, request(0, prompt=300), request(1, prompt=100))
    server.waiting.extend([request(2, prompt=50), request(3, prompt=50, generated=1, needs_prefill=False)])
    assert step(server) == ([], [], [(0, 300)], [])


def test_a_started_prompt_resumes_where_it_stopped() -> None:
    """A 300-token prompt of which 120 are prefilled needs 180 more; the rest of a 500-token budget (320) goes to the
    next waiting prompt, whose 400 tokens are cut to 320."""
    server = batch_server(max_tokens=500)
    started = request(0, prompt=300)
    started.prefilled = 120
    prefilling(server, started)
    server.waiting.append(request(1, prompt=400))
    assert step(server) == ([], [1], [(0, 180), (1, 320)], [])


def test_a_sequence_joining_with_its_kv_costs_one_token_of_budget() -> None:
    """A 2-token budget admits two shipped sequences (one decode token each) and not a third; with one running
    sequence already, only one."""
    server = batch_server(max_tokens=2)
    server.waiting.extend(request(i, generated=1, needs_prefill=False) for i in range(3))
    assert step(server) == ([0, 1], [], [], [])
    server = batch_server(max_tokens=2)
    server.join(request(9, generated=1))
    server.waiting.extend(request(i, generated=1, needs_prefill=False) for i in range(3))
    assert step(server)[0] == [0]


def test_a_preempted_sequence_needs_its_prompt_and_generated_tokens() -> None:
    """Capacity 1000 (990 below the watermark), 400 tokens in use: a preempted 500-token prompt that had made 100
    tokens needs 600 (> 590 free) and waits; with 80 made it needs 580 and is recomputed in one chunk of 580."""
    for generated, expected in ((100, ([], [], [], [])), (80, ([], [0], [(0, 580)], []))):
        server = batch_server(capacity=1000)
        server.join(request(9, prompt=399, generated=1))
        server.waiting.append(request(0, prompt=500, generated=generated))
        assert server.kv_used == 400 and step(server) == expected


def test_a_fresh_prompt_needs_one_token_beyond_it() -> None:
    """Capacity 1000, 490 in use: 500 free below the watermark; a 499-token prompt (needs 500) is admitted, a
    500-token one (needs 501) waits."""
    for prompt, started in ((499, [0]), (500, [])):
        server = batch_server(capacity=1000)
        server.join(request(9, prompt=489, generated=1))
        server.waiting.append(request(0, prompt=prompt))
        assert step(server)[1] == started


def test_prompts_being_prefilled_count_against_max_num_seqs() -> None:
    """max_num_seqs 3 with one running and one being prefilled: one more is admitted."""
    server = batch_server(max_seqs=3)
    server.join(request(9, generated=1))
    prefilling(server, request(8, prompt=100))
    server.waiting.extend(request(i, prompt=100) for i in range(3))
    assert step(server)[1] == [0]


def test_a_request_that_could_never_fit_below_the_watermark_is_refused() -> None:
    """Capacity 1000 (990 below the watermark): a 990-token prompt needs 991 and could never be admitted, even on
    an empty replica (vLLM ignores it: AllocStatus.NEVER); the request behind it is admitted in the same step. A
    989-token prompt (needs 990) waits only while others hold KV."""
    server = batch_server(capacity=1000)
    server.waiting.extend([request(0, prompt=990), request(1, prompt=300)])
    assert step(server) == ([], [1], [(1, 300)], [0])
    server = batch_server(capacity=1000)
    server.join(request(9, prompt=9, generated=1))
    server.waiting.extend([request(0, prompt=989), request(1, prompt=300)])
    assert step(server) == ([], [], [], []) and len(server.waiting) == 2


def test_the_prefill_pipeline_counts_against_max_num_seqs() -> None:
    """max_num_seqs 4 with 2 sequences still in the pipeline: a batch of 2."""
    server = PrefillServer(0, "p", None, 4, 10_000, 100_000, 100_000.0)  # type: ignore[arg-type]
    server.in_batch = 2
    server.queue.extend(request(i) for i in range(5))
    assert [r.id for r in prefill_batch(server)] == [0, 1]


def test_a_single_token_of_budget_still_buys_a_chunk() -> None:
    """301 tokens: a started 300-token prompt takes 300, the last token goes to the next started prompt; 301 tokens
    with nothing started: a waiting 300-token prompt, then one token of the next."""
    server = batch_server(max_tokens=301)
    prefilling(server, request(0, prompt=300), request(1, prompt=100))
    assert step(server)[2] == [(0, 300), (1, 1)]
    server = batch_server(max_tokens=301)
    server.waiting.extend([request(0, prompt=300), request(1, prompt=100)])
    assert step(server)[1:3] == ([0, 1], [(0, 300), (1, 1)])


def test_a_prefill_batch_fills_its_token_budget_and_no_more() -> None:
    """1000 tokens: 500 + 501 would exceed it by one, so the 501-token prompt waits; likewise 1000 tokens of KV."""
    server = PrefillServer(0, "p", None, 8, 1000, 100_000, 100_000.0)  # type: ignore[arg-type]
    server.queue.extend([request(0, prompt=500), request(1, prompt=501)])
    assert [r.id for r in prefill_batch(server)] == [0]
    server = PrefillServer(0, "p", None, 8, 100_000, 100_000, 1000.0)  # type: ignore[arg-type]
    server.queue.extend([request(0, prompt=500), request(1, prompt=501)])
    assert [r.id for r in prefill_batch(server)] == [0]
