"""A spoken conversation as a live client (what ``rspp talk`` runs).

:func:`talk` streams a WAV's PCM in real time like a microphone (then silence,
as an open microphone does), optionally mixes a barge-in utterance in
```barge_in_after_s`` seconds after the first reply audio arrives, collects
every server event and the reply audio, and sends ``end`` once every turn it
saw has closed and the line has been quiet for a moment. With ``texts`` it types
instead of speaking: each text is a ``text`` message (one user turn; pipelines
with an ``input.text`` entry), sent once the previous one's turn has closed, and
no audio is sent at all (a text-only pipeline takes none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rspp.client._client import LiveClient
from rspp.transports import (
    AudioOut,
    Clear,
    ErrorEvent,
    ReplyText,
    ServerEvent,
    Transcript,
    TurnEvent,
)

__all__ = ["TalkOptions", "TalkResult", "TalkTurn", "latency_table", "talk"]

#: a frame whose loudest sample exceeds this is voiced (espeak-ng / microphone speech)
VOICED_PEAK = 500


@dataclass(frozen=True, slots=True)
class TalkOptions:
    frame_ms: int = 20
    barge_in: bytes | None = None
    barge_in_after_s: float = 0.0
    #: quiet time (no open turn, no reply audio) after the input before ``end``
    quiet_s: float = 1.5
    #: give up waiting for replies after this long past the input
    max_wait_s: float = 60.0
    #: type these instead of speaking: one ``text`` message (one turn) each, in order
    texts: tuple[str, ...] = ()


@dataclass(slots=True)
class TalkTurn:
    turn_id: str
    transcript: str = ""
    reply: list[str] = field(default_factory=list)
    terminal: str | None = None
    reason: str | None = None
    cleared: bool = False
    #: client times (s since the input started): the last voiced frame sent before the turn
    #: opened (end of user speech), the ``open`` event, the first reply audio frame
    speech_end_at_s: float | None = None
    opened_at_s: float | None = None
    first_audio_at_s: float | None = None

    def _ms(self, a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else (b - a) * 1000

    @property
    def speech_end_to_open_ms(self) -> float | None:
        return self._ms(self.speech_end_at_s, self.opened_at_s)

    @property
    def speech_end_to_first_audio_ms(self) -> float | None:
        return self._ms(self.speech_end_at_s, self.first_audio_at_s)

    @property
    def open_to_first_audio_ms(self) -> float | None:
        return self._ms(self.opened_at_s, self.first_audio_at_s)


@dataclass(slots=True)
class TalkResult:
    events: list[ServerEvent] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    turns: dict[str, TalkTurn] = field(default_factory=dict)
    close_code: int | None = None
    close_reason: str = ""

    @property
    def ok(self) -> bool:
        return self.close_code in (1000, None) and not any(
            isinstance(e, ErrorEvent) and e.fatal for e in self.events)


async def talk(client: LiveClient, pcm: bytes, options: TalkOptions | None = None,
               on_event: Callable[[ServerEvent], None] | None = None) -> TalkResult:
    """Run one conversation on a connected client (see the module docstring).

    ``on_event`` sees every server event as it arrives, reply audio (``AudioOut``) included;
    ``TalkResult.events`` keeps the others, ``TalkResult.audio`` the reply PCM.
    """
    o = options or TalkOptions()
    loop = asyncio.get_running_loop()
    result = TalkResult()
    rate = client.sample_rate
    n = rate * o.frame_ms // 1000 * 2
    t0 = loop.time()
    state = {"first_audio": None, "last_activity": t0, "input_done": False,
             "last_voiced": None}
    open_turns: set[str] = set()
    current: list[str] = []
    barge = bytearray(o.barge_in or b"")
    barge_at: list[float] = []
    closed: list[str] = []
    errors: list[ErrorEvent] = []
    progress = asyncio.Event()  # a turn closed or an error came (the typist waits on it)

    def now() -> float:
        return loop.time() - t0

    async def type_texts() -> None:
        """Each text once the previous one's turn closed (or failed), then ``end``."""
        deadline = loop.time() + o.max_wait_s
        for text in o.texts:
            seen_closed, seen_errors = len(closed), len(errors)
            state["last_voiced"] = now()  # "end of speech": the text left
            await client.send_text(text)
            while len(closed) == seen_closed and len(errors) == seen_errors:
                progress.clear()
                try:
                    await asyncio.wait_for(progress.wait(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    break
        await client.end()

    async def send() -> None:
        k = 0
        total = -(-len(pcm) // n)
        deadline = None
        while True:
            frame = pcm[k * n:(k + 1) * n] if k < total else b""
            frame = frame.ljust(n, b"\0")
            if barge and barge_at and now() >= barge_at[0]:
                extra, barge[:] = bytes(barge[:n]), barge[n:]
                a = np.frombuffer(frame, dtype=np.int16).astype(np.int32)
                b = np.zeros_like(a)
                b[: len(extra) // 2] = np.frombuffer(extra, dtype=np.int16)
                frame = np.clip(a + b, -32768, 32767).astype(np.int16).tobytes()
                state["last_activity"] = loop.time()
            await client.send_audio(frame)
            if np.abs(np.frombuffer(frame, dtype=np.int16)).max(initial=0) > VOICED_PEAK:
                state["last_voiced"] = now()
            k += 1
            if k >= total:
                state["input_done"] = True
                if deadline is None:
                    deadline = loop.time() + o.max_wait_s
                barge_pending = bool(barge) and (o.barge_in is not None)
                quiet = loop.time() - float(state["last_activity"]) >= o.quiet_s  # type: ignore[arg-type]
                if (not open_turns and quiet and not barge_pending) or loop.time() > deadline:
                    await client.end()
                    return
            delay = t0 + k * o.frame_ms / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def turn(tid: str | None) -> TalkTurn | None:
        tid = tid or (current[-1] if current else None)
        if tid is None:
            return None
        return result.turns.setdefault(tid, TalkTurn(tid))

    sender = asyncio.create_task(type_texts() if o.texts else send(), name="talk-sender")
    try:
        async for ev in client.events():
            if on_event is not None:
                on_event(ev)
            if isinstance(ev, AudioOut):
                state["last_activity"] = loop.time()
                result.audio.extend(ev.data)
                t = turn(ev.turn_id)
                if t is not None and t.first_audio_at_s is None:
                    t.first_audio_at_s = now()
                if state["first_audio"] is None:
                    state["first_audio"] = now()
                    if o.barge_in is not None:
                        barge_at.append(now() + o.barge_in_after_s)
                continue
            result.events.append(ev)
            if isinstance(ev, TurnEvent):
                state["last_activity"] = loop.time()
                t = turn(ev.turn_id)
                if t is None:
                    continue
                if ev.state == "open":
                    open_turns.add(ev.turn_id)
                    current.append(ev.turn_id)
                    t.opened_at_s = now()
                    t.speech_end_at_s = state["last_voiced"]
                elif ev.state in ("commit", "abort"):
                    t.terminal, t.reason = ev.state, ev.reason
                elif ev.state == "close":
                    open_turns.discard(ev.turn_id)
                    closed.append(ev.turn_id)
                    progress.set()
            elif isinstance(ev, Transcript):
                state["last_activity"] = loop.time()
                t = turn(ev.turn_id) if ev.final else None
                if t is not None:
                    t.transcript = ev.text
            elif isinstance(ev, ReplyText):
                t = turn(ev.turn_id)
                if t is not None and not ev.final:  # the deltas (the final repeats them)
                    t.reply.append(ev.text)
            elif isinstance(ev, Clear):
                t = turn(ev.turn_id)
                if t is not None:
                    t.cleared = True
            elif isinstance(ev, ErrorEvent):
                errors.append(ev)
                progress.set()
    finally:
        if not sender.done():
            sender.cancel()
        await asyncio.wait({sender})
    result.close_code, result.close_reason = client.close_code, client.close_reason
    return result


_COLUMNS = ("turn", "outcome", "speech end -> open", "speech end -> audio", "open -> audio")


def latency_table(result: TalkResult) -> list[str]:
    """The per-turn latency table as the client measured it (lines of text)."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f} ms"

    rows = [_COLUMNS]
    for t in result.turns.values():
        outcome = t.terminal or "open"
        if t.terminal == "abort" and t.reason:
            outcome = f"abort({t.reason})"
        rows.append((t.turn_id.rsplit(":", 1)[-1], outcome, ms(t.speech_end_to_open_ms),
                     ms(t.speech_end_to_first_audio_ms), ms(t.open_to_first_audio_ms)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["per-turn latency at the client (end of speech: the last voiced frame sent, "
             "or the typed text)"]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
