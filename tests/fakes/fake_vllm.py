"""A stand-in for `vllm serve` on machines without GPUs: same argv, same HTTP surface, no model.

    python fake_vllm.py --record-dir DIR serve MODEL [the flags the launcher emits]

Accepts exactly the flags `launcher.vllm_args` produces (an unknown flag exits 2, as vLLM's parser
does), serves /health, /v1/models, /v1/completions and /v1/chat/completions (streaming too), and
answers a prefill request (`kv_transfer_params.do_remote_decode`) with `kv_transfer_params` shaped
like NixlConnector's. It records its argv, the launcher's env and every request it gets under DIR:
`start-<pid>.json` and `requests-<pid>.jsonl`. Ranks > 0 (`--headless`) serve nothing and wait.

Like vLLM, `--api-key` (or env VLLM_API_KEY) makes every /v1 route answer 401 without
`Authorization: Bearer KEY`; /health stays open. `--delay-ms` adds a fixed service time per request.

Faults for the failover tests, switched at run time by `POST /fake/fault` with a JSON object
{"mode": M, "seconds": S, "after_chunks": K, "count": N, "hop": "prefill"|"decode"|null}; the next N
generation requests (all if N is null) of that hop (either if null) then:
  hang             never answer                 slow             answer after S seconds
  stall            stream K chunks, then hang   cut              stream K chunks, then drop the connection
  not_json         200 with a body that is no JSON
  error            500                          exit             the process exits at once (code 3)
`{"mode": null}` clears it. `--record-dir` is the only required flag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

RECORDED_ENV = (
    "CUDA_VISIBLE_DEVICES",
    "VLLM_PP_LAYER_PARTITION",
    "VLLM_NIXL_SIDE_CHANNEL_HOST",
    "VLLM_NIXL_SIDE_CHANNEL_PORT",
    "VLLM_HOST_IP",
    "VLLM_API_KEY",
    "HF_TOKEN",
    "UCX_TLS",
)
FAULTS = ("hang", "slow", "stall", "cut", "not_json", "error", "exit")


def parse(argv: list[str]) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="fake_vllm")
    top.add_argument("--record-dir", type=Path, required=True)
    top.add_argument("command", choices=["serve"])
    top.add_argument("model")
    top.add_argument("--host", default="127.0.0.1")
    top.add_argument("--port", type=int, default=8000)
    top.add_argument("--served-model-name", nargs="+")
    top.add_argument("--tensor-parallel-size", type=int, default=1)
    top.add_argument("--pipeline-parallel-size", type=int, default=1)
    top.add_argument("--distributed-executor-backend", choices=["mp", "ray"])
    top.add_argument("--max-num-seqs", type=int)
    top.add_argument("--max-num-batched-tokens", type=int)
    top.add_argument("--max-model-len", type=int)
    top.add_argument("--gpu-memory-utilization", type=float)
    top.add_argument("--dtype", choices=["auto", "float16", "bfloat16", "float32"])
    top.add_argument("--quantization")
    top.add_argument("--kv-cache-dtype")
    top.add_argument("--kv-transfer-config", type=json.loads)
    top.add_argument("--nnodes", type=int, default=1)
    top.add_argument("--node-rank", type=int, default=0)
    top.add_argument("--master-addr")
    top.add_argument("--master-port", type=int)
    top.add_argument("--headless", action="store_true")
    top.add_argument("--enforce-eager", action="store_true")
    top.add_argument("--api-key")
    top.add_argument("--attention-backend")
    top.add_argument("--delay-ms", type=float, default=0.0)
    top.add_argument("--no-record", action="store_true", help="do not log each request (benchmarks)")
    return top.parse_args(argv)


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = (args.served_model_name or [args.model])[0]
        self.engine_id = (args.kv_transfer_config or {}).get("engine_id", f"engine-{args.port}")
        self.log = (args.record_dir / f"requests-{os.getpid()}.jsonl").open("a", buffering=1)
        self.next_block = 0
        key = args.api_key or os.environ.get("VLLM_API_KEY")
        self.auth = f"Bearer {key}" if key else None
        self.fault: dict[str, object] = {}

    async def set_fault(self, request):
        from aiohttp import web

        fault = await request.json()
        if fault.get("mode") not in (*FAULTS, None):
            return web.json_response({"error": f"mode must be one of {FAULTS}"}, status=400)
        self.fault = fault if fault.get("mode") else {}
        return web.json_response({"fault": self.fault})

    def take_fault(self, hop: str) -> dict[str, object]:
        """The fault that applies to this request (and count it down), or {}."""
        fault = self.fault
        if not fault or fault.get("hop") not in (None, hop):
            return {}
        count = fault.get("count")
        if count is not None:
            if int(count) <= 0:
                return {}
            fault["count"] = int(count) - 1
        return fault

    def record(self, **entry: object) -> None:
        if self.args.no_record:
            return
        self.log.write(json.dumps(entry, sort_keys=True) + "\n")

    async def health(self, _request):
        from aiohttp import web

        return web.Response(text="")

    async def models(self, request):
        from aiohttp import web

        if self.auth is not None and request.headers.get("Authorization") != self.auth:
            return web.json_response({"error": "Unauthorized"}, status=401)
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model"}]})

    async def completions(self, request):
        return await self.generate(request, chat=False)

    async def chat(self, request):
        return await self.generate(request, chat=True)

    async def generate(self, request, chat: bool):
        from aiohttp import web

        if self.auth is not None and request.headers.get("Authorization") != self.auth:
            return web.json_response({"error": "Unauthorized"}, status=401)
        body = await request.json()
        request_id = request.headers.get("X-Request-Id", "none")
        kv = body.get("kv_transfer_params") or {}
        fault = self.take_fault("prefill" if kv.get("do_remote_decode") else "decode")
        mode = fault.get("mode")
        if mode == "exit":
            os._exit(3)
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "slow":
            await asyncio.sleep(float(fault.get("seconds", 1.0)))
        if self.args.delay_ms:
            await asyncio.sleep(self.args.delay_ms / 1000)
        if mode == "error":
            return web.json_response({"error": {"message": "injected failure"}}, status=500)
        if mode == "not_json":
            return web.Response(text="<html>oops</html>", content_type="application/json")
        self.record(
            path=request.path,
            request_id=request_id,
            max_tokens=body.get("max_tokens"),
            stream=bool(body.get("stream")),
            kv_transfer_params=kv,
            model=body.get("model"),
            authorization=request.headers.get("Authorization"),
        )
        if body.get("model") != self.name:
            error = {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError"}
            return web.json_response({"error": error}, status=404)
        if kv.get("do_remote_decode"):
            if body.get("max_tokens") != 1 or body.get("stream"):
                return web.json_response({"error": {"message": "prefill needs max_tokens=1, stream=false"}}, status=400)
            return web.json_response(self.answer(request_id, chat, 1, self.kv_params(request_id)))
        if kv.get("do_remote_prefill") and not kv.get("remote_engine_id"):
            return web.json_response({"error": {"message": "remote prefill without remote_engine_id"}}, status=400)
        tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        if not body.get("stream"):
            if mode == "cut":  # promise more than is sent, then drop the connection
                raw = json.dumps(self.answer(request_id, chat, tokens, None)).encode()
                response = web.StreamResponse(headers={"Content-Type": "application/json"})
                response.content_length = len(raw)
                await response.prepare(request)
                await response.write(raw[: len(raw) // 2])
                request.transport.close()
                return response
            return web.json_response(self.answer(request_id, chat, tokens, None))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(tokens):
            if mode in ("cut", "stall") and i == int(fault.get("after_chunks", 1)):
                if mode == "stall":
                    await asyncio.sleep(3600)
                request.transport.close()
                return response
            await response.write(f"data: {json.dumps(self.chunk(request_id, chat, i, i == tokens - 1))}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def kv_params(self, request_id: str) -> dict[str, object]:
        blocks = list(range(self.next_block, self.next_block + 4))
        self.next_block += 4
        return {
            "do_remote_prefill": True,
            "do_remote_decode": False,
            "remote_block_ids": blocks,
            "remote_engine_id": self.engine_id,
            "remote_request_id": request_id,
            "remote_host": os.environ.get("VLLM_NIXL_SIDE_CHANNEL_HOST", "localhost"),
            "remote_port": int(os.environ.get("VLLM_NIXL_SIDE_CHANNEL_PORT", "5600")),
            "tp_size": self.args.tensor_parallel_size,
        }

    def text(self, count: int, start: int = 0) -> str:
        return "".join(f" {self.engine_id}:{i}" for i in range(start, start + count))

    def answer(self, request_id: str, chat: bool, tokens: int, kv: dict[str, object] | None) -> dict[str, object]:
        text = self.text(tokens)
        choice = {"index": 0, "finish_reason": "length", "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        usage = {"prompt_tokens": 4, "completion_tokens": tokens, "total_tokens": 4 + tokens}
        return {
            "id": f"cmpl-{request_id}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
            "usage": usage,
            "kv_transfer_params": kv,
        }

    def chunk(self, request_id: str, chat: bool, i: int, last: bool) -> dict[str, object]:
        choice = {"index": 0, "finish_reason": "length" if last else None, "logprobs": None}
        choice.update({"delta": {"content": self.text(1, i)}} if chat else {"text": self.text(1, i)})
        return {
            "id": f"cmpl-{request_id}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [choice],
        }


def main(argv: list[str]) -> None:
    args = parse(argv)
    args.record_dir.mkdir(parents=True, exist_ok=True)
    start = {
        "argv": argv[argv.index("serve") :],
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
        "pid": os.getpid(),
        "engine_id": (args.kv_transfer_config or {}).get("engine_id"),
        "node_rank": args.node_rank,
    }
    (args.record_dir / f"start-{os.getpid()}.json").write_text(json.dumps(start, sort_keys=True))
    if args.headless:  # like vLLM's non-zero ranks: no HTTP; SIGTERM's default action ends it
        while True:
            time.sleep(3600)
    from aiohttp import web

    engine = Engine(args)
    app = web.Application()
    app.router.add_get("/health", engine.health)
    app.router.add_get("/v1/models", engine.models)
    app.router.add_post("/v1/completions", engine.completions)
    app.router.add_post("/v1/chat/completions", engine.chat)
    app.router.add_post("/fake/fault", engine.set_fault)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, loop=event_loop())


def event_loop():
    try:
        import uvloop
    except ModuleNotFoundError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main(sys.argv[1:])
