"""Timeline view (F-074): filter lines and render an ordered Rich table.

Rows are ordered by ``runtime_timestamp_ms``, then ``runtime_sequence``, then
file position; lines without a timestamp (plans, transitions) take the stamp of
the line before them. The node label is ``node_id`` (else the emitter module id, else
``-``); lanes are coloured (ControlLane red, DataLane green, TelemetryLane blue,
non-event kinds magenta). Filters: session, turn, lane (``ControlLane`` or a
prefix such as ``control``), node and type (the line kind, signal, outcome kind
or transition trigger). The ``type`` column shows the signal / outcome kind /
trigger, else the line kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgspec
from rich.table import Table

from rspp.observability._timeline_io import TimelineLine

__all__ = ["TimelineFilter", "filter_lines", "timeline_table", "timeline_text"]

LANE_STYLES = {"ControlLane": "bold red", "DataLane": "green", "TelemetryLane": "blue"}


class TimelineFilter(msgspec.Struct, frozen=True, kw_only=True):
    session: str | None = None
    turn: str | None = None
    lane: str | None = None
    node: str | None = None
    type: str | None = None


def event_type(line: TimelineLine) -> str:
    """The signal, outcome kind or trigger of a line, else its kind."""
    r = line.record
    return str(r.get("signal") or r.get("outcome_kind") or r.get("trigger") or line.kind)


def node_label(line: TimelineLine) -> str:
    return str(line.record.get("node_id") or line.record.get("emitted_by") or "-")


def _lane_matches(lane: object, wanted: str) -> bool:
    if not isinstance(lane, str):
        return False
    return lane.lower() == wanted.lower() or lane.lower().startswith(wanted.lower())


def filter_lines(lines: Iterable[TimelineLine], spec: TimelineFilter) -> list[TimelineLine]:
    """Matching lines in display order (one pass; kept payloads keep only what is shown)."""
    kept: list[tuple[int, int, int, TimelineLine]] = []
    stamp = (0, 0)
    for line in lines:  # lines without a timestamp (plans, transitions) keep their place
        r = line.record
        ts, seq = r.get("runtime_timestamp_ms"), r.get("runtime_sequence")
        if isinstance(ts, int):
            stamp = (ts, seq if isinstance(seq, int) else stamp[1])
        if spec.session and r.get("session_id") != spec.session:
            continue
        if spec.turn and r.get("turn_id") != spec.turn:
            continue
        if spec.lane and not _lane_matches(r.get("lane"), spec.lane):
            continue
        if spec.node and node_label(line) != spec.node:
            continue
        if spec.type and spec.type not in (event_type(line), line.kind):
            continue
        slim = line if line.payload is None else msgspec.structs.replace(
            line, payload=_slim_payload(line.payload))
        kept.append((*stamp, line.line, slim))
    kept.sort(key=lambda item: item[:3])
    return [item[3] for item in kept]


def _slim_payload(payload: dict[str, object]) -> dict[str, object] | None:
    text, kind = payload.get("text"), payload.get("type")
    slim: dict[str, object] = {}
    if isinstance(text, str):
        slim["text"] = text[:60]
    if kind:
        slim["type"] = kind
    return slim or None


def _detail(line: TimelineLine) -> str:
    r = line.record
    parts = []
    if r.get("reason"):
        parts.append(f"reason={r['reason']}")
    if r.get("plan_hash"):
        parts.append(f"plan={str(r['plan_hash'])[:12]}")
    if line.payload:
        if isinstance(line.payload.get("text"), str):
            parts.append(repr(line.payload["text"][:60]))
        elif line.payload.get("type"):
            parts.append(f"payload={line.payload['type']}")
    if r.get("authority_epoch") is not None:
        parts.append(f"epoch={r['authority_epoch']}")
    return " ".join(parts)


COLUMNS = ("line", "t ms", "seq", "session", "turn", "lane", "node", "type", "detail")


def timeline_row(line: TimelineLine) -> tuple[str, ...]:
    """The cells of one line, in :data:`COLUMNS` order."""
    r = line.record
    return (
        str(line.line),
        str(r.get("runtime_timestamp_ms", "")),
        str(r.get("runtime_sequence", "")),
        str(r.get("session_id", "")),
        str(r.get("turn_id") or ""),
        str(r.get("lane") or line.kind),
        node_label(line),
        event_type(line),
        _detail(line),
    )


def timeline_table(lines: list[TimelineLine], title: str = "timeline") -> Table:
    """A Rich table of already filtered and ordered lines."""
    table = Table(title=title, show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for line in lines:
        style = LANE_STYLES.get(str(line.record.get("lane")), "magenta")
        table.add_row(*timeline_row(line), style=style)
    return table


def timeline_text(lines: list[TimelineLine], title: str = "timeline") -> Iterator[str]:
    """The same table as plain aligned text, line by line (for pipes and files: no styling,
    no wrapping, linear in the rows; a Rich table measures every cell again and again)."""
    rows = [timeline_row(line) for line in lines]
    widths = [max([len(c), *(len(row[i]) for row in rows)]) for i, c in enumerate(COLUMNS)]
    widths[-1] = 0  # the detail column is last: never padded

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    yield title
    yield fmt(COLUMNS)
    yield fmt(tuple("-" * max(w, len(c)) for c, w in zip(COLUMNS, widths, strict=True)))
    for row in rows:
        yield fmt(row)
