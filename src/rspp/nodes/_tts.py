"""TTS, error speech (F-135) and text-only degrade (F-137).

``tts`` synthesises each sentence as soon as it arrives, so playback starts
before the LLM finished the reply (F-064), and turns the end-of-stream marker
into ``audio_end``. Soft cancel: on cancel of a turn the in-flight chunk may
finish, nothing more of that turn is produced. When every allowed TTS provider
fails and ``degrade_to_text`` is on (default), the sentence goes out as a text
event on the audio port (``attrs["degraded"]``) and the driver is told once per
turn, which emits ``degrade``.

``error_speech`` is the usual fallback of a failing stage: it speaks a fixed,
polite apology (params ``text``) and ends the turn's output normally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from rspp.kernel import AudioFormat, Event, Node, NodeContext
from rspp.nodes._services import services_of
from rspp.providers import ProviderCallError

__all__ = ["ErrorSpeechNode", "TtsNode"]


class _Speaker:
    """Synthesis of one text for one turn, emitting audio events on ``port``."""

    def __init__(self, node: Node, port: str) -> None:
        self.node = node
        self.port = port
        self.samples: dict[str | None, int] = {}
        self.cancelled: set[str] = set()
        self.degraded: set[str | None] = set()
        self.chunks = 0

    async def speak(self, cause: Event, text: str, degrade: bool) -> None:
        ctx = self.node.ctx
        tid = cause.turn_id
        ctl = services_of(ctx).tts(ctx.node_id, tid)
        first = True
        try:
            async with contextlib.aclosing(ctl.stream(_one(text))) as stream:  # type: ignore[type-var]
                async for chunk in stream:
                    if tid is not None and tid in self.cancelled:
                        return
                    fmt = AudioFormat(chunk.sample_rate, chunk.channels)
                    start = self.samples.get(tid, 0)
                    self.samples[tid] = start + len(chunk.pcm) // 2
                    attrs = {"sentence": text} if first else {}
                    first = False
                    ev = cause.derive("audio_chunk", chunk.pcm, audio_format=fmt,
                                      sample_index=start, attrs=attrs)
                    ev.turn_id = tid
                    self.chunks += 1
                    ctx.emit(ev, self.port)
        except ProviderCallError as exc:
            if not degrade:
                raise
            out = cause.derive("text", text, attrs={"degraded": True})
            out.turn_id = tid
            ctx.emit(out, self.port)
            if tid not in self.degraded:
                self.degraded.add(tid)
                hooks = services_of(ctx).hooks
                if hooks is not None:
                    hooks.degraded(tid, f"tts_unavailable:{exc.outcome.value}")

    def end(self, cause: Event) -> None:
        ev = cause.derive("audio_end", None, attrs={"eos": True})
        ev.turn_id = cause.turn_id
        self.samples.pop(cause.turn_id, None)
        self.node.ctx.emit(ev, self.port)


async def _one(text: str) -> Any:
    yield text


class TtsNode(Node):
    """Text to speech per sentence; ``audio_end`` at the end of the turn's text."""

    type_name = "tts"
    inputs = ("text",)
    outputs = ("audio",)
    streaming = "partial_and_final"
    cancel_mode = "soft"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.degrade_to_text = bool(self.params.get("degrade_to_text", True))
        self.speaker = _Speaker(self, "audio")

    async def process(self, event: Event, port: str) -> None:
        if event.kind != "text":
            return None
        if event.turn_id is not None and event.turn_id in self.speaker.cancelled:
            return None
        text = str(event.payload or "").strip()
        if text and event.final:
            await self.speaker.speak(event, text, self.degrade_to_text)
        if event.attrs and event.attrs.get("eos"):
            self.speaker.end(event)
        return None

    def on_cancel(self, turn_id: str | None, reason: str) -> None:
        if turn_id is not None:
            self.speaker.cancelled.add(turn_id)


class ErrorSpeechNode(Node):
    """Speaks ``params.text`` for the turn of the event it receives (fallback target)."""

    type_name = "error_speech"
    inputs = ("in",)
    outputs = ("audio",)
    cancel_mode = "soft"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.text = str(self.params.get("text", "Sorry, something went wrong. Please try again."))
        self.speaker = _Speaker(self, "audio")
        self.spoken = 0

    async def process(self, event: Event, port: str) -> None:
        self.spoken += 1
        self.ctx.audit("error_speech:apology")
        await self.speaker.speak(event, self.text, True)
        self.speaker.end(event)
        return None

    def on_cancel(self, turn_id: str | None, reason: str) -> None:
        if turn_id is not None:
            self.speaker.cancelled.add(turn_id)
