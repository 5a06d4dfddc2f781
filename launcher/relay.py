"""One hop of a request to one engine, bounded in time, classifying every way it can fail.

The router (`launcher.router`) decides where to send and whether to retry; this module only talks to one
engine and says what happened:
- `prefill_hop` returns the prefill's `kv_transfer_params`;
- `relay_hop` sends the request to a decode (or colocated) engine and relays the answer to the client:
  a non-streamed answer is read whole and checked to be a JSON object before the client sees a status;
  a streamed one is relayed only once its first chunk has arrived, so a failure before that is retryable;
- a failure the client has not yet seen raises `HopError` (retryable unless the engine refused the request
  itself, 4xx, which is passed to the client as the engine wrote it: `EngineAnswer`);
- a stream cut after bytes reached the client ends with an SSE error event (and no `[DONE]`), never a
  silent end that looks like success.
Time limits per hop (`HopTimeouts`): connect (aiohttp's sock_connect), first byte, idle between chunks,
and total, all enforced by one asyncio timer that is re-armed as the hop progresses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web
from yarl import URL

from launcher.router_config import HopTimeouts

Hop = Literal["prefill", "decode", "direct"]
FailureKind = Literal["connect", "timeout", "status", "broken", "cut"]
PREFILL_KV_PARAMS = {"do_remote_decode": True, "do_remote_prefill": False}
PREFILL_DROPPED = ("stream_options", "min_tokens", "kv_transfer_params")
DONE_MARK = b"[DONE]"


class HopError(Exception):
    """An engine failed this hop before the client saw anything (so another replica may be tried)."""

    def __init__(self, replica: str, hop: Hop, kind: FailureKind, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.replica, self.hop, self.kind, self.message, self.status = replica, hop, kind, message, status


class EngineAnswer(Exception):
    """The engine refused the request itself (4xx): the client gets it unchanged and nothing is retried."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass(frozen=True)
class Target:
    """Where a hop goes and how long it may take. `answer_timeout` bounds a hop whose answer comes whole
    (the prefill, a non-streamed decode): first byte and total are then the same moment."""

    replica: str
    url: URL  # engine base URL + path, parsed once per backend
    hop: Hop
    limits: HopTimeouts

    answer_timeout: aiohttp.ClientTimeout = field(init=False, repr=False)
    stream_timeout: aiohttp.ClientTimeout = field(init=False, repr=False)

    def __post_init__(self) -> None:  # built once per backend, not per request
        connect = self.limits.connect_s
        object.__setattr__(
            self, "answer_timeout", aiohttp.ClientTimeout(total=self.answer_limit_s, sock_connect=connect)
        )
        object.__setattr__(self, "stream_timeout", aiohttp.ClientTimeout(total=None, sock_connect=connect))

    @property
    def answer_limit_s(self) -> float:
        return min(self.limits.first_byte_s, self.limits.total_s)


def prefill_body(body: Mapping[str, Any]) -> bytes:
    """The request as the prefill hop sends it: one token, not streamed, asking the engine to keep the KV."""
    sent = {k: v for k, v in body.items() if k not in PREFILL_DROPPED}
    sent.update(max_tokens=1, stream=False, kv_transfer_params=PREFILL_KV_PARAMS)
    if "max_completion_tokens" in sent:
        sent["max_completion_tokens"] = 1
    return json.dumps(sent, separators=(",", ":")).encode()


def with_kv_params(raw: bytes, body: Mapping[str, Any], kv_params: object) -> bytes:
    """The client's request plus `kv_transfer_params`, without re-encoding it when the bytes allow.

    The key is appended before the closing brace when the client sent none (so no key is duplicated) and
    the body is plain UTF-8 JSON; otherwise (a client-sent kv_transfer_params is never passed on, or
    another encoding) the object is re-encoded. `kv_params=None` just strips a client's own.
    """
    stripped = raw.strip()
    if "kv_transfer_params" not in body and stripped[:1] == b"{" and stripped[-1:] == b"}":
        if kv_params is None:
            return raw
        extra = b'"kv_transfer_params":' + json.dumps(kv_params, separators=(",", ":")).encode()
        return stripped[:-1] + (b"," if body else b"") + extra + b"}"
    sent = {k: v for k, v in body.items() if k != "kv_transfer_params"}
    if kv_params is not None:
        sent["kv_transfer_params"] = kv_params
    return json.dumps(sent, separators=(",", ":")).encode()


def _timeout_error(target: Target, phase: str, limit: float) -> HopError:
    message = f"{target.hop} replica {target.replica}: no {phase} within {limit:g} s"
    return HopError(target.replica, target.hop, "timeout", message, 504)


def _failure(target: Target, exc: BaseException, before: str) -> HopError:
    """What an aiohttp exception means for the hop: never reached the engine, too slow, or broken."""
    where = f"{target.hop} replica {target.replica}"
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return HopError(target.replica, target.hop, "connect", f"{where}: {exc}")
    if isinstance(exc, TimeoutError):
        return _timeout_error(target, before, target.answer_limit_s)
    return HopError(
        target.replica, target.hop, "broken", f"{where} failed before its {before}: {type(exc).__name__} {exc}"
    )


async def _send(
    session: aiohttp.ClientSession, target: Target, data: bytes, headers: Mapping[str, str], timeout: Any
) -> Any:
    """POST and wait for the response headers; failures become HopError."""
    try:
        return await session.post(target.url, data=data, headers=headers, timeout=timeout)
    except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
        raise _failure(target, exc, "answer") from None


async def _read_answer(target: Target, upstream: Any) -> bytes:
    """The whole body of a non-streamed answer; 5xx → HopError, 4xx → EngineAnswer."""
    try:
        raw = await upstream.read()
    except (aiohttp.ClientError, OSError) as exc:
        raise _failure(target, exc, "answer ended") from None
    if upstream.status >= 500:
        text = raw[:200].decode("utf-8", "replace")
        message = f"{target.hop} replica {target.replica} answered {upstream.status}: {text}"
        raise HopError(target.replica, target.hop, "status", message)
    if upstream.status >= 400:
        ctype = upstream.headers.get("Content-Type", "application/json")
        raise EngineAnswer(web.Response(status=upstream.status, body=raw, headers={"Content-Type": ctype}))
    return raw


async def answer_hop(
    session: aiohttp.ClientSession, target: Target, data: bytes, headers: Mapping[str, str]
) -> tuple[bytes, str, dict[str, Any]]:
    """A hop whose answer comes whole: (body, content type, the body parsed), the body a JSON object."""
    upstream = await _send(session, target, data, headers, target.answer_timeout)
    try:
        raw = await _read_answer(target, upstream)
        ctype = upstream.headers.get("Content-Type", "application/json")
    finally:
        upstream.release()
    parsed = _json_object(raw)
    if parsed is None:
        message = f"{target.hop} replica {target.replica} answered with a body that is no JSON object"
        raise HopError(target.replica, target.hop, "broken", message)
    return raw, ctype, parsed


async def prefill_hop(
    session: aiohttp.ClientSession, target: Target, data: bytes, headers: Mapping[str, str]
) -> object:
    """Run the prompt on the prefill engine; return the `kv_transfer_params` its answer carries."""
    _, _, answer = await answer_hop(session, target, data, headers)
    kv_params = answer.get("kv_transfer_params")
    if not kv_params:
        message = f"prefill replica {target.replica} answered without kv_transfer_params (is its KV connector set?)"
        raise HopError(target.replica, "prefill", "broken", message)
    return kv_params


def sse_error(message: str) -> bytes:
    error = {"error": {"message": message, "type": "upstream_error", "code": 502}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"


async def relay_hop(
    session: aiohttp.ClientSession,
    target: Target,
    data: bytes,
    headers: Mapping[str, str],
    stream: bool,
    request: web.Request,
    reply_headers: Mapping[str, str],
) -> tuple[web.StreamResponse, str | None]:
    """Send to the engine and answer the client; (response, why a stream was cut after it began, or None)."""
    if not stream:
        raw, ctype, _ = await answer_hop(session, target, data, headers)
        return web.Response(body=raw, headers={**reply_headers, "Content-Type": ctype}), None
    return await _relay_stream(session, target, data, headers, request, reply_headers)


async def _relay_stream(
    session: aiohttp.ClientSession,
    target: Target,
    data: bytes,
    headers: Mapping[str, str],
    request: web.Request,
    reply_headers: Mapping[str, str],
) -> tuple[web.StreamResponse, str | None]:
    """Relay a streamed answer once its first chunk is in; one asyncio timer, re-armed per chunk, enforces the
    first-byte, idle and total limits (aiohttp's own would apply one read limit to both waits)."""
    loop = asyncio.get_running_loop()
    limits = target.limits
    end = loop.time() + limits.total_s
    response: web.StreamResponse | None = None
    try:
        async with asyncio.timeout_at(min(end, loop.time() + limits.first_byte_s)) as timer:
            upstream = await _send(session, target, data, headers, target.stream_timeout)
            try:
                ctype = upstream.headers.get("Content-Type", "application/json")
                if not ctype.startswith("text/event-stream"):
                    raw = await _read_answer(target, upstream)
                    if _json_object(raw) is None:
                        message = f"{target.hop} replica {target.replica} answered with a body that is no JSON object"
                        raise HopError(target.replica, target.hop, "broken", message)
                    return web.Response(body=raw, headers={**reply_headers, "Content-Type": ctype}), None
                first = await _read_chunk(target, upstream)
                response = web.StreamResponse(headers={**reply_headers, "Content-Type": ctype})
                await _to_client(response.prepare(request))
                await _to_client(response.write(first))
                tail = first[-16:]
                while True:
                    timer.reschedule(min(end, loop.time() + limits.idle_s))
                    chunk = await upstream.content.readany()
                    if not chunk:
                        break
                    timer.reschedule(end)
                    await _to_client(response.write(chunk))
                    tail = (tail + chunk)[-16:]
                if DONE_MARK not in tail:
                    why = f"{target.hop} replica {target.replica} ended the stream without [DONE]"
                    return response, await _end_with_error(response, why)
                await _to_client(response.write_eof())
                return response, None
            finally:
                upstream.release()
    except ClientGone:
        return response or web.StreamResponse(status=499), None
    except TimeoutError:
        if response is None:
            raise _timeout_error(target, "first byte", min(limits.first_byte_s, limits.total_s)) from None
        return response, await _end_with_error(response, f"{target.hop} replica {target.replica} timed out mid-stream")
    except (aiohttp.ClientError, OSError) as exc:
        if response is None:
            raise _failure(target, exc, "first chunk") from None
        return response, await _end_with_error(response, f"{target.hop} replica {target.replica} cut the stream: {exc}")


class ClientGone(Exception):
    """The client closed its connection while we were answering: nothing left to tell it."""


async def _to_client(write: Any) -> None:
    try:
        await write
    except (ConnectionResetError, RuntimeError):
        raise ClientGone from None


async def _read_chunk(target: Target, upstream: Any) -> bytes:
    try:
        chunk = await upstream.content.readany()
    except (aiohttp.ClientError, OSError) as exc:
        raise HopError(target.replica, target.hop, "broken", f"{target.hop} replica {target.replica}: {exc}") from None
    if not chunk:
        raise HopError(target.replica, target.hop, "broken", f"{target.hop} replica {target.replica}: empty stream")
    return chunk


async def _end_with_error(response: web.StreamResponse, message: str) -> str:
    """Tell a client whose stream already started that it is incomplete; return the message (for metrics)."""
    try:
        await response.write(sse_error(message))
        await response.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass  # the client is gone too
    return message


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
