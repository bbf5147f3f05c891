"""Fake OpenAI (chat completions SSE, legacy completions with array prompts, audio/speech
PCM) and Anthropic Messages servers.

Real Starlette apps served by uvicorn on loopback, speaking the documented
wire formats including error bodies, ``Retry-After`` and mid-stream faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rspp.testing.fakes._faults import Fault, FaultPlan, RecordedRequest, tone_pcm

__all__ = ["FakeAnthropic", "FakeOpenAI", "echo_completion", "echo_reply"]


class _Abort(Exception):
    """Raised inside a streaming body: uvicorn drops the connection mid-stream."""


def echo_reply(messages: list[dict[str, Any]]) -> str:
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"You asked: {last}. This is a scripted fake reply."


def echo_completion(prompt: str) -> str:
    """The scripted completion of a prompt: it echoes the prompt's last ``User:`` line
    (the whole prompt when it has none)."""
    users = [ln[len("User:"):].strip() for ln in prompt.splitlines() if ln.startswith("User:")]
    return echo_reply([{"role": "user", "content": users[-1] if users else prompt.strip()}])


class _FakeBase:
    def __init__(
        self,
        *,
        api_key: str | None = None,
        reply: Callable[[list[dict[str, Any]]], str] = echo_reply,
        token_delay_s: float = 0.002,
    ) -> None:
        self.api_key = api_key
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.faults = FaultPlan()
        self.requests: list[RecordedRequest] = []
        #: the peer address of every connection a request came on: one per accepted socket
        #: (a client that keeps its connections alive reuses them: fewer peers than requests)
        self.peers: set[tuple[str, int]] = set()
        self.app = Starlette(routes=self._routes())

    @property
    def connections(self) -> int:
        """How many TCP connections requests came on (accepted sockets)."""
        return len(self.peers)

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    async def _record(self, request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.url.path, dict(request.headers), body))
        if request.client is not None:
            self.peers.add((request.client.host, request.client.port))
        return body if isinstance(body, dict) else {}

    async def _hold(self) -> AsyncIterator[str]:
        """A ``hold`` fault: report it, then SSE comment lines (which clients ignore; they
        keep the client's read timeout from firing) until the plan is released."""
        self.faults.held.set()
        while not self.faults.released.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.faults.released.wait(), 1.0)
            yield ": held\n\n"

    @staticmethod
    def _tokens(text: str) -> list[str]:
        words = text.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]


class FakeOpenAI(_FakeBase):
    """``/v1/chat/completions`` (SSE), ``/v1/completions`` (a string or an array of prompts,
    streamed or not) and ``/v1/audio/speech`` (streamed PCM 24 kHz).

    ``completion_batches`` holds the number of prompts of every ``/v1/completions``
    request, in arrival order; a prompt containing one of ``blocked_words`` is answered
    with ``finish_reason: content_filter`` and no text (the others of its request are not).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.complete: Callable[[str], str] = echo_completion
        self.completion_batches: list[int] = []
        self.blocked_words: set[str] = set()

    def _routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
        ]

    def _error(self, status: int, etype: str, message: str, fault: Fault | None) -> Response:
        headers = {}
        if fault is not None and fault.retry_after is not None:
            headers["retry-after"] = f"{fault.retry_after:g}"
        body = {"error": {"message": message, "type": etype, "param": None, "code": etype}}
        return JSONResponse(body, status_code=status, headers=headers)

    def _auth(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(401, "invalid_api_key", "Incorrect API key provided.", None)
        return None

    def _status_fault(self, fault: Fault | None) -> Response | None:
        if fault is None or fault.kind != "status":
            return None
        etype = fault.error_type or {
            429: "rate_limit_exceeded",
            401: "invalid_api_key",
            400: "invalid_request_error",
        }.get(fault.status, "server_error")
        return self._error(fault.status, etype, f"fake {etype}", fault)

    async def _open(self, request: Request) -> Response | tuple[dict[str, Any], Fault | None]:
        """Record the request, then its refusal (a bad key, the next fault's status) or
        its body and the fault it takes."""
        body = await self._record(request)
        denied = self._auth(request)
        if denied is not None:
            return denied
        fault = self.faults.next()
        failed = self._status_fault(fault)
        if failed is not None:
            return failed
        return body, fault

    async def chat(self, request: Request) -> Response:
        opened = await self._open(request)
        if isinstance(opened, Response):
            return opened
        body, fault = opened
        if not body.get("messages"):
            return self._error(400, "invalid_request_error", "'messages' is required", None)
        tokens = self._tokens(self.reply(body["messages"]))
        model = str(body.get("model", "fake"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            yield chunk({"role": "assistant", "content": ""})
            for index, token in enumerate(tokens):
                if fault is not None and index == fault.after_items:
                    if fault.kind == "disconnect":
                        raise _Abort("fake mid-stream disconnect")
                    if fault.kind == "stream_error":
                        err = {
                            "message": "fake stream error",
                            "type": fault.error_type or "server_error",
                        }
                        yield f"data: {json.dumps({'error': err})}\n\n"
                        return
                    if fault.kind == "truncate":
                        return
                    if fault.kind == "hold":
                        async for keepalive in self._hold():
                            yield keepalive
                await asyncio.sleep(self.token_delay_s)
                yield chunk({"content": token})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def completions(self, request: Request) -> Response:
        opened = await self._open(request)
        if isinstance(opened, Response):
            return opened
        body, fault = opened
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(
                isinstance(p, str) for p in prompts):
            return self._error(400, "invalid_request_error",
                               "'prompt' must be a string or an array of strings", None)
        self.completion_batches.append(len(prompts))
        # a completion of "...Assistant:" starts with a space, as a real model's does
        replies = [None if any(w in p for w in self.blocked_words)
                   else [" " + t if i == 0 else t for i, t in enumerate(
                       self._tokens(self.complete(p)))] for p in prompts]
        model = str(body.get("model", "fake"))
        usage = {"prompt_tokens": sum(len(p.split()) for p in prompts),
                 "completion_tokens": sum(len(r or ()) for r in replies)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]

        def completion(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                    "model": model, "choices": choices, **extra}

        def choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
            return {"index": index, "text": text, "logprobs": None, "finish_reason": finish}

        def finish(reply: list[str] | None) -> str:
            return "content_filter" if reply is None else "stop"

        if not body.get("stream"):
            return JSONResponse(completion(
                [choice(i, "".join(r or ()), finish(r)) for i, r in enumerate(replies)],
                usage=usage))

        def data(payload: dict[str, Any]) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            # the prompts are generated together: each step gives every unfinished prompt
            # its next token, each a chunk of its own choice index
            longest = max(len(r or ()) for r in replies)
            for step in range(longest + 1):
                if fault is not None and step == fault.after_items and step < longest:
                    if fault.kind == "disconnect":
                        raise _Abort("fake mid-stream disconnect")
                    if fault.kind == "stream_error":
                        err = {"message": "fake stream error",
                               "type": fault.error_type or "server_error"}
                        yield data({"error": err})
                        yield "data: [DONE]\n\n"
                        return
                    if fault.kind == "truncate":
                        return
                await asyncio.sleep(self.token_delay_s)
                for i, reply in enumerate(replies):
                    tokens = reply or []
                    if step < len(tokens):
                        yield data(completion([choice(i, tokens[step], None)]))
                    elif step == len(tokens):
                        yield data(completion([choice(i, "", finish(reply))]))
            if (body.get("stream_options") or {}).get("include_usage"):
                yield data(completion([], usage=usage))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def speech(self, request: Request) -> Response:
        opened = await self._open(request)
        if isinstance(opened, Response):
            return opened
        body, fault = opened
        text = str(body.get("input", ""))
        if not text or body.get("response_format") != "pcm":
            return self._error(400, "invalid_request_error", "input and response_format=pcm", None)
        pcm = tone_pcm(0.03 * len(text), 24000)
        step = 4800

        async def audio() -> AsyncIterator[bytes]:
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            for index, offset in enumerate(range(0, len(pcm), step)):
                if fault is not None and fault.kind == "disconnect" and index == fault.after_items:
                    raise _Abort("fake mid-stream disconnect")
                await asyncio.sleep(self.token_delay_s)
                yield pcm[offset : offset + step]

        return StreamingResponse(audio(), media_type="audio/pcm")


class FakeAnthropic(_FakeBase):
    """``/v1/messages`` with ``stream: true`` (SSE event types of the Messages API)."""

    def _routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"])]

    @staticmethod
    def _error(status: int, etype: str, message: str, retry_after: float | None = None) -> Response:
        headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        body = {"type": "error", "error": {"type": etype, "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def messages(self, request: Request) -> Response:
        body = await self._record(request)
        if self.api_key is not None and request.headers.get("x-api-key") != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "invalid_request_error", "anthropic-version header is required")
        fault = self.faults.next()
        if fault is not None and fault.kind == "status":
            etype = fault.error_type or {
                429: "rate_limit_error",
                529: "overloaded_error",
                401: "authentication_error",
                400: "invalid_request_error",
            }.get(fault.status, "api_error")
            return self._error(fault.status, etype, f"fake {etype}", fault.retry_after)
        if not body.get("messages") or not body.get("max_tokens"):
            return self._error(400, "invalid_request_error", "messages and max_tokens are required")
        tokens = self._tokens(self.reply(body["messages"]))

        def event(name: str, data: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n"

        async def events() -> AsyncIterator[str]:
            if fault is not None and fault.kind == "stall":
                await asyncio.sleep(fault.seconds)
            message: dict[str, Any] = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": body.get("model"),
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            }
            yield event("message_start", {"message": message})
            yield event(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            yield event("ping", {})
            for index, token in enumerate(tokens):
                if fault is not None and index == fault.after_items:
                    if fault.kind == "disconnect":
                        raise _Abort("fake mid-stream disconnect")
                    if fault.kind == "stream_error":
                        etype = fault.error_type or "overloaded_error"
                        yield event("error", {"error": {"type": etype, "message": "Overloaded"}})
                        return
                    if fault.kind == "truncate":
                        return
                await asyncio.sleep(self.token_delay_s)
                yield event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": token}},
                )
            yield event("content_block_stop", {"index": 0})
            yield event(
                "message_delta",
                {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(tokens)}},
            )
            yield event("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")
