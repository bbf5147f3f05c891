"""LLM node: streams the reply to a final transcript, keeping conversation history.

Each delta goes out on ``text`` as a non-final token event; the end of the reply
is a final, empty text event with ``attrs["eos"]`` (the segmenter flushes on it
and the TTS turns it into ``audio_end``). History keeps the last ``max_history``
messages; a cancelled reply is kept only up to what was generated.

The history is session-hot state (``history``: plain ``[role, text]`` pairs in the
node's session state, ``NodeServices.session_state``; the node itself is turn
scoped): a served session checkpoints it at turn boundaries, and the runtime a
session fails over to restores it, so the conversation goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from rspp.kernel import DictState, Event, Node, NodeContext, StateHandle
from rspp.nodes._services import services_of
from rspp.providers import ChatMessage, LLMRequest

__all__ = ["LlmNode", "eos_event"]

_ROLES = ("user", "assistant", "system")


def eos_event(cause: Event) -> Event:
    """The end-of-stream marker of ``cause``'s turn."""
    ev = cause.derive("text", "", final=True, attrs={"eos": True})
    ev.turn_id = cause.turn_id
    return ev


class LlmNode(Node):
    """Language model stage with conversation history (session scoped)."""

    type_name = "llm"
    inputs = ("text",)
    outputs = ("text",)
    streaming = "partial_and_final"
    cancel_mode = "hard"
    scope = "session"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.system_prompt = str(self.params.get("system_prompt", "")).strip()
        self.max_history = int(self.params.get("max_history", 20))
        self.max_tokens = int(self.params.get("max_tokens", 256))
        self.replies: list[str] = []
        self._memory: StateHandle | None = None

    @property
    def memory(self) -> StateHandle:
        """The node's session-hot state (in process memory when the session has none)."""
        if self._memory is None:
            make = services_of(self.ctx).session_state
            self._memory = make(self.ctx.node_id) if make is not None else DictState()
        return self._memory

    @property
    def history(self) -> list[ChatMessage]:
        """The conversation so far (oldest first), from the node's session state."""
        pairs = self.memory.get("history")
        if not isinstance(pairs, list):
            return []
        return [ChatMessage(str(p[0]), str(p[1])) for p in pairs  # type: ignore[arg-type]
                if isinstance(p, list | tuple) and len(p) == 2 and p[0] in _ROLES]

    def _remember(self, role: str, text: str) -> None:
        pairs = self.memory.get("history")
        kept = list(pairs) if isinstance(pairs, list) else []
        kept.append([role, text])
        # bounded: only the last max_history messages are ever sent
        self.memory.set("history", kept[-max(self.max_history, 1):])

    def _request(self) -> LLMRequest:
        msgs: list[ChatMessage] = []
        if self.system_prompt:
            msgs.append(ChatMessage("system", self.system_prompt))
        msgs.extend(self.history[-self.max_history:])
        return LLMRequest(messages=tuple(msgs), max_tokens=self.max_tokens)

    async def process(self, event: Event, port: str) -> None:
        if event.kind != "text" or not event.final or (event.attrs or {}).get("eos"):
            return None
        text = str(event.payload or "").strip()
        if text:
            self._remember("user", text)
            ctl = services_of(self.ctx).llm(self.ctx.node_id, event.turn_id)
            reply: list[str] = []
            try:
                async with contextlib.aclosing(ctl.stream(self._request())) as stream:  # type: ignore[type-var]
                    async for delta in stream:
                        reply.append(delta)
                        tok = event.derive("text", delta, final=False, attrs={"token": True})
                        tok.turn_id = event.turn_id
                        self.ctx.emit(tok, "text")
            finally:
                # in-band (F-026): recorded with the session's metrics events when enabled
                self.ctx.telemetry.metric("llm_reply_tokens", float(len(reply)),
                                          turn_id=event.turn_id or "")
                full = "".join(reply).strip()
                if full:
                    self._remember("assistant", full)
                    self.replies.append(full)
        self.ctx.emit(eos_event(event), "text")
        return None
