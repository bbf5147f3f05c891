"""Reading timeline files: JSON Lines or length-prefixed MessagePack.

Each line is ``{"kind": K, "record": {...}, "payload": {...}?}``. Reading never
raises on a bad line: it returns the good lines plus one
:class:`~rspp.observability.TimelineFormatError` per bad line (with its line
number, or frame number for MessagePack).

Objects that already look like a timeline entry (``kind``, ``record`` and
``payload`` attributes, e.g. ``rspp.contracts.TimelineEntry``) are normalised
with :func:`as_line` so the comparator and the SLO gates accept either.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from rspp.observability._errors import TimelineFormatError

__all__ = ["TimelineLine", "as_line", "as_lines", "read_timeline"]

_json = msgspec.json.Decoder()
_msgpack = msgspec.msgpack.Decoder()


class TimelineLine(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded timeline line with its position in the file (1-based)."""

    line: int
    kind: str
    record: dict[str, Any]
    payload: dict[str, Any] | None = None

    # convenience accessors used by gates, comparator and the viewer
    def get(self, name: str, default: Any = None) -> Any:
        return self.record.get(name, default)


def _shape(path: str, number: int, value: object) -> TimelineLine | TimelineFormatError:
    if not isinstance(value, dict):
        return TimelineFormatError(path, number, "expected a JSON object with 'kind' and 'record'")
    kind = value.get("kind")
    record = value.get("record")
    payload = value.get("payload")
    if not isinstance(kind, str) or not kind:
        return TimelineFormatError(path, number, "'kind' must be a non-empty string")
    if not isinstance(record, dict):
        return TimelineFormatError(path, number, "'record' must be a JSON object")
    if payload is not None and not isinstance(payload, dict):
        return TimelineFormatError(path, number, "'payload' must be a JSON object when present")
    return TimelineLine(line=number, kind=kind, record=record, payload=payload)


def _is_msgpack(data: bytes, path: Path) -> bool:
    if path.suffix in {".msgpack", ".mpk"}:
        return True
    return bool(data) and data[:1] not in (b"{", b" ", b"\n", b"\r", b"\t")


def read_timeline(path: str | Path) -> tuple[list[TimelineLine], list[TimelineFormatError]]:
    """Decode every line of a timeline file; bad lines become errors, never exceptions."""
    file = Path(path)
    name = str(file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        return [], [TimelineFormatError(name, 0, f"cannot read file: {exc.strerror or exc}")]
    lines: list[TimelineLine] = []
    errors: list[TimelineFormatError] = []
    if _is_msgpack(data, file):
        offset, number = 0, 0
        while offset < len(data):
            number += 1
            if offset + 4 > len(data):
                errors.append(TimelineFormatError(name, number, "truncated MessagePack frame"))
                break
            (size,) = struct.unpack_from(">I", data, offset)
            body = data[offset + 4 : offset + 4 + size]
            offset += 4 + size
            try:
                result = _shape(name, number, _msgpack.decode(body))
            except msgspec.DecodeError as exc:
                result = TimelineFormatError(name, number, f"invalid MessagePack: {exc}")
            (errors if isinstance(result, TimelineFormatError) else lines).append(result)  # type: ignore[arg-type]
        return lines, errors
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            result = _shape(name, number, _json.decode(raw))
        except msgspec.DecodeError as exc:
            result = TimelineFormatError(name, number, f"invalid JSON: {exc}")
        (errors if isinstance(result, TimelineFormatError) else lines).append(result)  # type: ignore[arg-type]
    return lines, errors


def as_line(entry: object, number: int = 0) -> TimelineLine:
    """Normalise a TimelineEntry-like object or a mapping into a :class:`TimelineLine`."""
    if isinstance(entry, TimelineLine):
        return entry
    if isinstance(entry, Mapping):
        kind, record, payload = entry.get("kind"), entry.get("record"), entry.get("payload")
    else:
        kind = getattr(entry, "kind", None)
        record = getattr(entry, "record", None)
        payload = getattr(entry, "payload", None)
    record_b = msgspec.to_builtins(record) if record is not None else None
    payload_b = msgspec.to_builtins(payload) if payload is not None else None
    result = _shape("<entries>", number, {"kind": str(kind) if kind else kind,
                                          "record": record_b, "payload": payload_b})
    if isinstance(result, TimelineFormatError):
        raise result
    return result


def as_lines(entries: Iterable[object]) -> list[TimelineLine]:
    return [as_line(entry, number) for number, entry in enumerate(entries, start=1)]
