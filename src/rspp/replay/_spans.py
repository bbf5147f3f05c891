"""Where each session's lines are in a many-session timeline file (:class:`SessionSpan`,
:func:`timeline_sessions`) and the lines of one session (:func:`span_lines`, and
:func:`index_lines` for the index pass of a streamed recording)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rspp.observability._errors import TimelineFormatError
from rspp.observability._timeline_io import (
    Payloads,
    TimelineLine,
    decode_line,
    is_msgpack,
    iter_raw,
    iter_timeline,
)
from rspp.replay._fastline import compared_line

__all__ = ["SessionFinder", "SessionSpan", "index_lines", "span_lines", "timeline_sessions"]


@dataclass(frozen=True, slots=True)
class SessionSpan:
    """Where one session's lines are in a many-session timeline file."""

    session_id: str
    start: tuple[int, int]  # byte offset of its first line, line number before it
    last_line: int


def timeline_sessions(path: str | Path) -> list[SessionSpan]:
    """The sessions of a timeline file in order of first appearance (one pass over the
    records, payloads skipped; memory per session, not per line)."""
    offsets = [0]
    found = SessionFinder()
    for item in iter_timeline(path, payloads=False, offsets=offsets):
        if not isinstance(item, TimelineFormatError):
            found.see(item, offsets[0])
    return found.spans()


class SessionFinder:
    """Where each session's lines are, seen line by line (:func:`timeline_sessions`)."""

    __slots__ = ("_current", "_spans")

    def __init__(self) -> None:
        self._spans: dict[str, tuple[tuple[int, int], int]] = {}
        self._current: str | None = None

    def see(self, item: TimelineLine, offset: int) -> None:
        """A good line that starts at byte ``offset``."""
        sid = item.record.get("session_id")
        if isinstance(sid, str):
            self._current = sid
        current = self._current
        if current is not None:  # a record without session_id (a plan) joins the one before
            span = self._spans.get(current)
            self._spans[current] = (span[0] if span is not None
                                    else (offset, item.line - 1), item.line)

    def spans(self) -> list[SessionSpan]:
        return [SessionSpan(sid, start, last) for sid, (start, last) in self._spans.items()]


def span_lines(path: str, span: SessionSpan | None, *, payloads: Payloads = True,
               offsets: list[int] | None = None
               ) -> Iterator[TimelineLine | TimelineFormatError]:
    """The lines of one session of a file (all lines without ``span``; ``offsets`` as in
    :func:`~rspp.observability.iter_timeline`, for all lines only)."""
    if span is None:
        yield from iter_timeline(path, payloads=payloads, offsets=offsets)
        return
    current: object = None
    for item in iter_timeline(path, start=span.start, payloads=payloads):
        if isinstance(item, TimelineFormatError):
            yield item
            continue
        if item.line > span.last_line:
            return
        sid = item.record.get("session_id")
        if isinstance(sid, str):
            current = sid
        if current == span.session_id:  # records without session_id: as in timeline_sessions
            yield item


def index_lines(path: str, span: SessionSpan | None, offsets: list[int] | None
                 ) -> Iterator[TimelineLine | TimelineFormatError]:
    """:func:`span_lines` with ``payloads="text"`` for the index pass of a streamed
    recording: event records (most lines), control signals and turn transitions keep only
    the fields a replay reads (:func:`~rspp.replay._fastline.compared_line`); other lines
    are decoded whole."""
    msgpack = is_msgpack(path)
    current: object = None
    for number, raw in iter_raw(path, start=span.start if span else (0, 0), offsets=offsets):
        if isinstance(raw, TimelineFormatError):
            yield raw
            continue
        if span is not None and number > span.last_line:
            return
        item = None if msgpack else compared_line(number, raw, checked=False)
        if item is None:
            decoded = decode_line(path, number, raw, msgpack=msgpack, payloads="text")
            if isinstance(decoded, TimelineFormatError):
                yield decoded
                continue
            item = decoded
        if span is not None:  # the session's lines (records without session_id join it)
            sid = item.record.get("session_id")
            if isinstance(sid, str):
                current = sid
            if current != span.session_id:
                continue
        yield item
