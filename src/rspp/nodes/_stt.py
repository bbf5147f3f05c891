"""STT node: drives the bound STT provider per utterance (partial and final text).

Utterances are segmented by the VAD's frame attributes (``speech``/``eou``) so
audio and boundaries stay in stream order. A short pre-roll of non-speech audio
is prepended so word onsets the VAD needed to confirm are not lost. Partial
hypotheses go out on ``partial`` (session scoped, ``final=False``, increasing
``revision``); the final transcript goes out on ``final`` stamped with the turn
the driver opened for this utterance (F-009) and flagged as the turn's last event on
``final`` (``LAST_OF_TURN``): a graph that has no LLM to end the reply with ``eos`` (an
echo TTS, the transcript as the reply) ends the turn's streams once everything
downstream of the transcript drained (the kernel's ``stream_end``; nodes see nothing more).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from rspp.kernel import LAST_OF_TURN, AudioFormat, Event, Node, NodeContext
from rspp.nodes._services import services_of
from rspp.providers import AudioChunk

__all__ = ["SttNode"]

_QUEUE_FRAMES = 3000  # 60 s of 20 ms frames: one utterance never needs more
#: audio a recogniser may hold back undecoded (pocketsphinx decodes 100 ms batches)
_DECODE_LAG_S = 0.12


#: an audio chunk and the input sample index where it ends (-1: unknown)
_Item = tuple[AudioChunk, int]


class _Utterance:
    __slots__ = ("confidence", "ctl", "final", "queue", "revision", "segment", "task",
                 "waiting")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=_QUEUE_FRAMES)
        self.task: asyncio.Task[None] | None = None
        self.final = ""
        self.confidence: float | None = None  # of the last final piece, when the provider says
        self.revision = 0
        self.segment = "0"  # F-024 segment id of this utterance's partials and final
        self.waiting = False  # the recogniser waits for more audio (all it pulled is decoded)
        #: the utterance's STT controller (its invocations join the turn the final opens)
        self.ctl: object | None = None

    def working(self) -> bool:
        """The recogniser has audio to decode (or a final to produce) and may still emit."""
        task = self.task
        return task is not None and not task.done() and (not self.waiting
                                                         or not self.queue.empty())


class SttNode(Node):
    """Speech to text over the provider chain of the turn plan."""

    type_name = "stt"
    inputs = ("audio", "vad")
    outputs = ("partial", "final")
    streaming = "partial_and_final"
    cancel_mode = "hard"
    hook_timeout_ms = 60_000  # on_start loads the STT models (seconds on a busy machine)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.preroll_ms = float(self.params.get("preroll_ms", 300))
        self.emit_partials = bool(self.params.get("partials", True))
        self._pre: deque[_Item] = deque()
        self._pre_ms = 0.0
        self._utt: _Utterance | None = None
        self.utterances = 0
        self.finals: list[str] = []
        self._finishing: list[asyncio.Task[None]] = []
        #: utterances whose recogniser task runs (the current one and those finishing)
        self._recognising: list[_Utterance] = []

    async def on_start(self) -> None:
        """Load the STT models before the first utterance (adapters with ``warm_up``)."""
        svc = services_of(self.ctx)
        for pid in svc.chains.get("stt", ()):
            warm = getattr(svc.providers.get(pid), "warm_up", None)
            if warm is not None:
                await warm()

    async def _recognise(self, utt: _Utterance, number: int) -> None:
        live = services_of(self.ctx).live_transcript

        async def audio() -> AsyncIterator[AudioChunk]:
            pulled = -1
            while True:
                # the provider asks for more: what it pulled before is decoded (but one batch)
                if pulled >= 0 and live.utterance == number:
                    live.decoded_until = pulled
                utt.waiting = True
                try:
                    item = await utt.queue.get()
                finally:
                    utt.waiting = False
                if item is None:
                    return
                chunk, end = item
                if end >= 0:
                    pulled = end - int(_DECODE_LAG_S * chunk.sample_rate)
                yield chunk

        ctl = utt.ctl = services_of(self.ctx).stt(self.ctx.node_id, None)
        async with contextlib.aclosing(ctl.stream(audio())) as stream:  # type: ignore[type-var]
            async for tr in stream:
                if tr.is_final:
                    utt.final = (utt.final + " " + tr.text).strip() if utt.final else tr.text
                    utt.confidence = tr.confidence
                elif tr.text:
                    if live.utterance == number:
                        live.text = tr.text
                    if not self.emit_partials:
                        continue
                    utt.revision += 1
                    ev = Event("text", tr.text, final=False, revision=utt.revision,
                               attrs={"partial": True, "segment": utt.segment})
                    ev.turn_id = None
                    self.ctx.emit(ev, "partial")

    def _start(self) -> _Utterance:
        utt = _Utterance()
        utt.segment = f"{self.ctx.node_id}:u{self.utterances + 1}"
        for item in self._pre:
            utt.queue.put_nowait(item)
        self._pre.clear()
        self._pre_ms = 0.0
        self.utterances += 1
        live = services_of(self.ctx).live_transcript
        live.utterance, live.text, live.decoded_until = self.utterances, "", -1
        utt.task = asyncio.create_task(self._recognise(utt, self.utterances),
                                       name=f"{self.ctx.node_id}:stt")
        self._recognising.append(utt)
        utt.task.add_done_callback(lambda _t: self._recognising.remove(utt))
        return utt

    def working(self) -> bool:
        """A recogniser still decodes audio it was given (its partials and final are the
        outputs of inputs already processed: a file run waits for them, see ``Node``)."""
        return any(utt.working() for utt in self._recognising)

    async def _finish(self, utt: _Utterance, ev: Event, prev: asyncio.Task[None] | None) -> None:
        error: str | None = None
        try:
            if utt.task is not None:
                await utt.task
        except Exception as exc:  # provider failure: the turn is failed, not the session
            error = getattr(exc, "code", None) or type(exc).__name__
            self.ctx.audit(f"stt:error:{error}")
        if prev is not None:
            with contextlib.suppress(Exception):
                await prev
        text = utt.final.strip()
        self.finals.append(text)
        hooks = services_of(self.ctx).hooks
        turn_id = await hooks.turn_for_utterance() if hooks is not None else self.ctx.turn_id
        if hooks is not None and turn_id is None:
            self.ctx.audit("stt:final_without_turn")
            return
        if turn_id is not None and utt.ctl is not None:
            # opened before the turn, the STT invocation belongs to the turn it opens (F-160)
            services_of(self.ctx).adopt(turn_id, utt.ctl)
        if error is not None and hooks is not None and turn_id is not None:
            hooks.turn_failed(turn_id, f"provider_error:stt:{error}")
            return
        out = ev.derive("text", text, revision=utt.revision + 1,
                        attrs={"transcript": True, "utterance": self.utterances,
                               "segment": utt.segment, LAST_OF_TURN: True,
                               # edge conditions may test confidence
                               **({"confidence": utt.confidence}
                                  if utt.confidence is not None else {})})
        out.turn_id = turn_id
        self.ctx.emit(out, "final")

    async def process(self, event: Event, port: str) -> None:
        if port != "audio" or event.kind != "audio_chunk":
            return None
        attrs = event.attrs or {}
        fmt = event.audio_format or AudioFormat()
        pcm = bytes(event.payload or b"")
        chunk = AudioChunk(pcm, fmt.sample_rate, fmt.channels)
        end = -1 if event.sample_index is None else (
            event.sample_index + len(pcm) // (2 * fmt.channels))
        item = (chunk, end)
        speech = bool(attrs.get("speech", True))
        if self._utt is None and speech:
            self._utt = self._start()
        if self._utt is None:
            if pcm:
                self._pre.append(item)
                self._pre_ms += fmt.duration_ms(len(pcm))
                while self._pre_ms > self.preroll_ms and len(self._pre) > 1:
                    self._pre_ms -= fmt.duration_ms(len(self._pre.popleft()[0].pcm))
            return None
        if pcm:
            await self._utt.queue.put(item)
        if attrs.get("eou"):
            utt, self._utt = self._utt, None
            await utt.queue.put(None)
            prev = self._finishing[-1] if self._finishing else None
            task = asyncio.create_task(self._finish(utt, event, prev),
                                       name=f"{self.ctx.node_id}:final")
            self._finishing.append(task)
            task.add_done_callback(self._finishing.remove)
        return None

    async def _drop(self) -> None:
        utt, self._utt = self._utt, None
        if utt is not None and utt.task is not None and not utt.task.done():
            utt.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await utt.task

    async def on_stop(self) -> None:
        await self._drop()
        for task in list(self._finishing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
