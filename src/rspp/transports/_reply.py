"""A turn's reply text as the client sees it.

A reply may leave the graph on several outputs (LLM text on ``output.text`` and TTS
audio on ``output.audio``): the transports deliver it (and the turn commits) once
every one of :meth:`~rspp.kernel.RuntimeGraph.reply_ports` ended.

:class:`ReplyTextStream` is the ``reply_text`` events of one turn
(docs/protocol/websocket.md): the text arrives as LLM tokens or TTS sentences and
goes out as coalesced deltas, one per clause (a delta is sent when the buffered
text ends a clause or sentence, reaches ``max_chars``, or has waited ``flush_s``),
then one ``final`` event with the whole reply. Concatenating the deltas gives the
final text. Only one output supplies a turn's text: the first that carries any
(a spec that sends the LLM's text and speaks it does not send the reply twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rspp.transports._protocol import ReplyText

__all__ = ["ReplyTextStream"]

#: a delta goes out when the buffered text ends with one of these (a clause or sentence)
CLAUSE_END = frozenset(".,;:!?\n\u2026\u3001\u3002\uff01\uff0c\uff1f")


class ReplyTextStream:
    """The ``reply_text`` deltas and final text of one turn (see the module docstring)."""

    __slots__ = ("_buffered", "_flush_s", "_max_chars", "_send", "_sent", "_timer", "closed",
                 "port", "turn_id")

    def __init__(self, turn_id: str | None, send: Callable[[ReplyText], None], *,
                 flush_s: float, max_chars: int) -> None:
        self.turn_id = turn_id
        self._send = send
        self._flush_s, self._max_chars = flush_s, max_chars
        #: the output that supplies this turn's text (the first to carry any)
        self.port: str | None = None
        self._sent: list[str] = []
        self._buffered = ""
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    @property
    def text(self) -> str:
        """The reply text so far (sent and buffered)."""
        return "".join(self._sent) + self._buffered

    def add(self, port: str, text: str, *, whole: bool) -> None:
        """Text of the reply from ``port``: a token (``whole=False``, concatenated as it
        is) or a whole sentence (``whole``: a space joins it to the text before)."""
        if self.closed or not text:
            return
        if self.port is None:
            self.port = port
        elif port != self.port:
            return  # another output carries the same reply (its audio's sentences)
        if whole and not text[0].isspace():
            before = self._buffered or (self._sent[-1] if self._sent else "")
            if before and not before[-1].isspace():
                text = " " + text
        self._buffered += text
        tail = self._buffered.rstrip()
        if (tail and tail[-1] in CLAUSE_END) or len(self._buffered) >= self._max_chars:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Send the buffered text as one delta."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buffered and not self.closed:
            delta, self._buffered = self._buffered, ""
            self._sent.append(delta)
            self._send(ReplyText(turn_id=self.turn_id, text=delta))

    def finish(self) -> None:
        """The reply ended: the last delta, then the whole text (``final``)."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        full = "".join(self._sent).strip()
        if full:
            self._send(ReplyText(turn_id=self.turn_id, text=full, final=True))

    def drop(self) -> None:
        """The turn was fenced: nothing more of its text goes out."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buffered = ""
        self.closed = True
