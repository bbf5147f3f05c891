"""The replay's one streaming pass over a timeline file (:class:`LineFetcher`): the lines
it feeds, fetched in file order, and every line handed once to the comparison."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from rspp.observability._errors import TimelineFormatError
from rspp.observability._timeline_io import (
    TimelineLine,
    decode_line,
    is_msgpack,
    iter_raw,
)
from rspp.replay._errors import ReplayInputError
from rspp.replay._fastline import compared_line, fed_line
from rspp.replay._spans import SessionSpan

__all__ = ["LineFetcher"]


class _LineSet:
    """A set of line numbers, one byte per line of the file (not a hashed int each)."""

    __slots__ = ("flags",)

    def __init__(self, lines: Iterable[int] = ()) -> None:
        #: flags[n] == 1: line n is in the set (read inline by LineFetcher._next)
        self.flags = bytearray()
        for number in lines:
            self.add(number)

    def add(self, number: int) -> None:
        if number >= len(self.flags):
            self.flags.extend(bytes(number + 1 - len(self.flags) + 4096))
        self.flags[number] = 1

    def discard(self, number: int) -> None:
        if number < len(self.flags):
            self.flags[number] = 0

    def __contains__(self, number: object) -> bool:
        return isinstance(number, int) and 0 <= number < len(self.flags) \
            and self.flags[number] == 1


class LineFetcher:
    """The replay's one streaming pass over a timeline file, with two cursors.

    *Feed*: ``fetcher(number)`` hands out a whole line (payload included) that the
    replay feeds (ingress events, played-back provider outputs). Lines are read
    forward in file order; a needed line passed before it is asked for (ingress
    slightly out of ``runtime_sequence`` order, the inputs between a node's input and
    its recorded output) waits, decoded, in a buffer, so memory is bounded by that
    look-ahead, not by the file.

    *Compare*: with :attr:`on_line` set (a streamed replay), every line of the
    session is handed to it once, in file order, as the pass reads it (records whole,
    of a payload only ``text`` and ``is_final``: what the comparator reads);
    :meth:`read_on` reads further for the comparison alone. Each line is read and
    decoded once for both.
    """

    def __init__(self, path: str, needed: Iterable[int], span: SessionSpan | None = None
                 ) -> None:
        self.path = path
        self.needed = _LineSet(needed)
        self.span = span
        #: needed lines passed early, decoded
        self.buffer: dict[int, TimelineLine] = {}
        self.peak = 0
        #: every line of the session, in file order, as it is read (see the class doc)
        self.on_line: Callable[[TimelineLine], None] | None = None
        #: instead of :attr:`on_line`: every line read, raw (undecoded unless it is fed:
        #: then with its decoded line, or the error decoding it), see
        #: :class:`~rspp.replay._paired.PairedComparison`
        self.on_raw: Callable[[int, bytes | TimelineFormatError,
                               TimelineLine | TimelineFormatError | None], None] | None = None
        self._lines: Iterator[tuple[int, bytes | TimelineFormatError]] | None = None
        self._msgpack = False
        self._session: object = None  # session of the last line naming one (span only)
        self._ended = False
        #: the number of the last line read (the comparison in a second process reads the
        #: recording as far as this pass had when a candidate line came: see
        #: :mod:`rspp.replay._compare_process`)
        self.position = 0

    def __call__(self, number: int) -> TimelineLine:
        found = self.buffer.pop(number, None)
        if found is not None:
            self.needed.discard(number)
            return found
        while not self._ended:
            item = self._next()
            if item is None:
                continue
            if item.line == number:
                self.needed.discard(number)
                return item
            if item.line in self.needed:
                self.buffer[item.line] = item
                if len(self.buffer) > self.peak:
                    self.peak = len(self.buffer)
        raise self._gone(number)

    def read_on(self, enough: Callable[[], bool] | None = None) -> None:
        """Read on (for :attr:`on_line`) until ``enough()`` or, without it, to the end."""
        while not self._ended and (enough is None or not enough()):
            item = self._next()
            if item is not None and item.line in self.needed:
                self.buffer[item.line] = item
                if len(self.buffer) > self.peak:
                    self.peak = len(self.buffer)

    def read_through(self, number: int) -> None:
        """Read on (for :attr:`on_line`) until line ``number`` is read (or the end)."""
        while not self._ended and self.position < number:
            item = self._next()
            if item is not None and item.line in self.needed:
                self.buffer[item.line] = item

    def _next(self) -> TimelineLine | None:
        """Read one line: decoded when needed or compared, else None (also at the end)."""
        if self._lines is None:  # lines are numbered, not decoded: only needed ones are
            self._msgpack = is_msgpack(self.path)
            self._lines = iter_raw(self.path, start=self.span.start if self.span else (0, 0))
        found = next(self._lines, None)
        span = self.span
        if found is None or (span is not None and found[0] > span.last_line):
            self._ended = True
            return None
        number, raw = found
        self.position = number
        on_raw = self.on_raw
        if on_raw is not None and (isinstance(raw, TimelineFormatError)
                                   or number not in self.needed):
            on_raw(number, raw, None)
            return None
        if isinstance(raw, TimelineFormatError):
            return None
        has = self.needed.flags  # (``number in self.needed`` inline: once per line)
        needed = number < len(has) and has[number] == 1
        on_line = self.on_line
        if not needed and on_line is None:
            return None
        fast = None if self._msgpack else fed_line(number, raw) if needed \
            else compared_line(number, raw, checked=True)
        item = fast if fast is not None else decode_line(
            self.path, number, raw, msgpack=self._msgpack, payloads=True if needed else "text")
        if on_raw is not None:
            on_raw(number, raw, item)
        if isinstance(item, TimelineFormatError):
            return None
        if on_line is not None:
            if span is not None:  # the session's lines, as span_lines gives them
                sid = item.record.get("session_id")
                if isinstance(sid, str):
                    self._session = sid
            if span is None or self._session == span.session_id:
                payload = item.payload
                on_line(item if not needed or payload is None else TimelineLine(
                    line=number, kind=item.kind, record=item.record,
                    payload=_text_of(payload)))
        return item

    def _gone(self, number: int) -> ReplayInputError:
        return ReplayInputError(f"{self.path}:{number}: the line is gone; the timeline file "
                                "changed while it was replayed")

    def close(self) -> None:
        lines, self._lines = self._lines, None
        if isinstance(lines, Generator):
            lines.close()
        self._ended = True
        self.buffer.clear()


def _text_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """What the comparator reads of a payload (as ``payloads="text"`` decodes it)."""
    if "text" not in payload and "is_final" not in payload:
        return {}
    return {k: payload[k] for k in ("text", "is_final") if k in payload}
