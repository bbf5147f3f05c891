"""Reading timeline files: JSON Lines or length-prefixed MessagePack, streamed.

Each line is ``{"kind": K, "record": {...}, "payload": {...}?}``.
:func:`iter_timeline` reads a file line by line (memory bounded by the
longest line, :data:`MAX_LINE_BYTES`) and yields a :class:`TimelineLine` per
good line and a :class:`~rspp.observability.TimelineFormatError` per bad one
(with its line number, or frame number for MessagePack); it never raises on
file content. :func:`read_timeline` collects both lists.

The envelope fields every tool computes with are checked at this edge, so
nothing downstream meets a ``"soon"``, a ``null`` or a 2**80 where an
integer belongs: :data:`INT_FIELDS` must be integers in 0..2**63-1 when
present, ``transport_sequence`` an integer or null, ``session_id`` and
``turn_id`` strings or null, and a ``schema_version`` one this release can
decode (same major; another major is refused naming the release that reads
it). Lines nested deeper than the decoder's recursion limit and lines over
:data:`MAX_LINE_BYTES` are errors, not crashes.

Objects that already look like a timeline entry (``kind``, ``record`` and
``payload`` attributes, e.g. ``rspp.contracts.TimelineEntry``) are normalised
with :func:`as_line` so the comparator and the SLO gates accept either.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, cast

import msgspec

from rspp.contracts import schema_version_problem
from rspp.observability._errors import TimelineFormatError

__all__ = ["INT_FIELDS", "MAX_LINE_BYTES", "Payloads", "TimelineLine", "as_line", "as_lines",
           "decode_line", "envelope_problem", "is_msgpack", "iter_raw", "iter_timeline",
           "iter_values", "read_timeline"]

MAX_LINE_BYTES = 16 << 20
"""Longest timeline line (or MessagePack frame) accepted: 16 MiB."""

INT_FIELDS = ("runtime_timestamp_ms", "runtime_sequence", "wall_clock_timestamp_ms",
              "authority_epoch")
"""Record fields that, when present, must be integers in 0..2**63-1."""

_INT_MAX = (1 << 63) - 1
_NULLABLE_INT = ("transport_sequence",)
_NULLABLE_STR = ("session_id", "turn_id")
_json = msgspec.json.Decoder()
_msgpack = msgspec.msgpack.Decoder()


class _Head(msgspec.Struct):
    """A line decoded without its payload (kept as raw bytes, never parsed into objects)."""

    kind: object = None
    record: object = None
    payload: msgspec.Raw = msgspec.Raw(b"null")


_json_head = msgspec.json.Decoder(_Head)
_msgpack_head = msgspec.msgpack.Decoder(_Head)


class _TextPart(msgspec.Struct):
    """What ``payloads="text"`` keeps of a payload (audio bytes are skipped, not decoded)."""

    text: Any = msgspec.UNSET
    is_final: Any = msgspec.UNSET


class _TextLine(msgspec.Struct):
    kind: object = None
    record: object = None
    payload: _TextPart | None = None


_json_text = msgspec.json.Decoder(_TextLine)
_msgpack_text = msgspec.msgpack.Decoder(_TextLine)

#: ``payloads`` of the readers: True (decode them), False (skip them: ``payload`` None)
#: or ``"text"`` (only their ``text`` and ``is_final`` fields; ``{}`` for any other
#: payload, None when there is none)
Payloads = bool | Literal["text"]


class TimelineLine(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded timeline line with its position in the file (1-based)."""

    line: int
    kind: str
    record: dict[str, Any]
    payload: dict[str, Any] | None = None

    # convenience accessors used by gates, comparator and the viewer
    def get(self, name: str, default: Any = None) -> Any:
        return self.record.get(name, default)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def envelope_problem(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, message)`` of the first envelope field with the wrong type, else None."""
    for name in INT_FIELDS:
        value = record.get(name, 0)
        if type(value) is not int or not 0 <= value <= _INT_MAX:
            return name, f"must be an integer in 0..2**63-1, got {_shown(value)}"
    for name in _NULLABLE_INT:
        value = record.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= _INT_MAX):
            return name, f"must be null or an integer in 0..2**63-1, got {_shown(value)}"
    for name in _NULLABLE_STR:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return name, f"must be null or a string, got {_shown(value)}"
    version = schema_version_problem(record.get("schema_version"))
    return None if version is None else ("schema_version", version)


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
    problem = envelope_problem(record)
    if problem is not None:
        return TimelineFormatError(path, number, f"record.{problem[0]}: {problem[1]}")
    return TimelineLine(line=number, kind=kind, record=record, payload=payload)


def _decode(name: str, number: int, raw: bytes, msgpack: bool, payloads: Payloads = True
            ) -> object:
    """The decoded value of one line, or a :class:`TimelineFormatError` (never raises).

    Without ``payloads`` the line is decoded as a :class:`_Head` (payload left raw);
    with ``"text"`` as a :class:`_TextLine` (a line that does not fit it is decoded
    whole, so its problem is named as usual).
    """
    what = "MessagePack" if msgpack else "JSON"
    try:
        if payloads == "text":
            try:
                line = (_msgpack_text if msgpack else _json_text).decode(raw)
            except msgspec.ValidationError:
                pass  # not the shape of a line: decoded whole below, and named by _shape
            else:
                return {"kind": line.kind, "record": line.record,
                        "payload": _text_part(line.payload)}
            return (_msgpack if msgpack else _json).decode(raw)
        if payloads:
            return (_msgpack if msgpack else _json).decode(raw)
        head = (_msgpack_head if msgpack else _json_head).decode(raw)
        return {"kind": head.kind, "record": head.record, "payload": None}
    except msgspec.ValidationError:
        return [raw]  # not an object: _shape names the problem
    except msgspec.DecodeError as exc:
        return TimelineFormatError(name, number, f"invalid {what}: {exc}")
    except RecursionError:
        return TimelineFormatError(name, number, f"invalid {what}: nested too deeply; a "
                                   "timeline line is a flat record, not a deep structure")


def _text_part(part: _TextPart | None) -> dict[str, Any] | None:
    if part is None:
        return None
    out: dict[str, Any] = {}
    if part.text is not msgspec.UNSET:
        out["text"] = part.text
    if part.is_final is not msgspec.UNSET:
        out["is_final"] = part.is_final
    return out


def _too_long(name: str, number: int, size: int) -> TimelineFormatError:
    return TimelineFormatError(name, number, f"line of {size} bytes or more is over the "
                               f"{MAX_LINE_BYTES}-byte limit of a timeline line")


_Item = tuple[int, object]


def _json_lines(name: str, f: IO[bytes], payloads: Payloads | None, number: int = 0,
                offsets: list[int] | None = None) -> Iterator[_Item]:
    """``(number, value)`` per line; ``payloads=None``: the line's raw bytes, undecoded.

    With ``offsets`` (a one-item list holding the byte offset reading starts at), each
    item is yielded with ``offsets[0]`` at the offset after the item before it (as
    ``tell`` between items reads it; counted here: ``tell`` is a system call a line)."""
    pos = after = offsets[0] if offsets is not None else 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        pos += len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            size = len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line, bounded reads
                raw = f.readline(MAX_LINE_BYTES)
                size += len(raw)
                pos += len(raw)
            if offsets is not None:
                offsets[0] = after
            yield number, _too_long(name, number, size)
            after = pos
            continue
        if raw.isspace():
            continue
        if offsets is not None:
            offsets[0] = after
        yield number, (raw if payloads is None
                       else _decode(name, number, raw, msgpack=False, payloads=payloads))
        after = pos


def _msgpack_frames(name: str, f: IO[bytes], payloads: Payloads | None, number: int = 0
                    ) -> Iterator[_Item]:
    while True:
        head = f.read(4)
        if not head:
            return
        number += 1
        if len(head) < 4:
            yield number, TimelineFormatError(name, number, "truncated MessagePack frame")
            return
        (size,) = struct.unpack(">I", head)
        if size > MAX_LINE_BYTES:
            yield number, _too_long(name, number, size)
            return  # the frame boundary is lost: nothing after it can be trusted
        body = f.read(size)
        if len(body) < size:
            yield number, TimelineFormatError(name, number, f"truncated MessagePack frame "
                                              f"({len(body)} of {size} bytes)")
            return
        yield number, (body if payloads is None
                       else _decode(name, number, body, msgpack=True, payloads=payloads))


def iter_values(path: str | Path, *, payloads: Payloads = True,
                offsets: list[int] | None = None,
                start: tuple[int, int] = (0, 0)) -> Iterator[tuple[int, object]]:
    """Stream ``(line number, decoded value)`` of a JSON Lines / MessagePack file.

    The value is a :class:`TimelineFormatError` for a line that does not decode
    (and, with line 0, for a file that cannot be read); nothing is raised. Without
    ``payloads`` each line becomes ``{"kind", "record", "payload": None}`` and its
    payload is skipped, not decoded (faster for tools that only read records); with
    ``"text"`` only a payload's ``text`` and ``is_final`` are decoded.
    ``start`` = (byte offset, line number before it) resumes reading at a line
    boundary; with ``offsets`` (a one-item list) the byte offset of the line just
    yielded is kept in ``offsets[0]``.
    """
    yield from _values(path, payloads, offsets, start)


def iter_raw(path: str | Path, *, start: tuple[int, int] = (0, 0),
             offsets: list[int] | None = None
             ) -> Iterator[tuple[int, bytes | TimelineFormatError]]:
    """``(line number, raw bytes)`` of each line (MessagePack: frame), nothing decoded.

    Numbered as :func:`iter_values` numbers them (a reader that decodes only the lines
    it needs, by number); a line over the size limit or a broken frame is an error.
    ``start`` and ``offsets`` as in :func:`iter_values`.
    """
    for number, value in _values(path, None, offsets, start):
        yield number, cast("bytes | TimelineFormatError", value)  # raw: nothing decoded


def decode_line(path: str | Path, number: int, raw: bytes, *, msgpack: bool,
                payloads: Payloads = True) -> TimelineLine | TimelineFormatError:
    """One raw line of :func:`iter_raw` decoded and checked as :func:`iter_timeline` does."""
    value = _decode(str(path), number, raw, msgpack=msgpack, payloads=payloads)
    return value if isinstance(value, TimelineFormatError) else _shape(str(path), number, value)


def is_msgpack(path: str | Path) -> bool:
    """Whether ``path`` is read as MessagePack frames (by suffix or first byte)."""
    file = Path(path)
    try:
        with file.open("rb") as f:
            return _msgpack_by(file, f.peek(1)[:1])
    except OSError:
        return _msgpack_by(file, b"")


def _msgpack_by(file: Path, first: bytes) -> bool:
    return file.suffix in {".msgpack", ".mpk"} or (
        bool(first) and first not in (b"{", b" ", b"\n", b"\r", b"\t"))


def _values(path: str | Path, payloads: Payloads | None, offsets: list[int] | None,
            start: tuple[int, int]) -> Iterator[tuple[int, object]]:
    file = Path(path)
    name = str(file)
    try:
        f = file.open("rb")
    except OSError as exc:
        yield 0, TimelineFormatError(name, 0, f"cannot read file: {exc.strerror or exc}")
        return
    with f:
        try:
            msgpack = _msgpack_by(file, f.peek(1)[:1])
            f.seek(start[0])
            if offsets is not None and not msgpack:  # the reader counts the offsets
                offsets[0] = start[0]
                yield from _json_lines(name, f, payloads, start[1], offsets)
                return
            lines = (_msgpack_frames if msgpack else _json_lines)(name, f, payloads, start[1])
            if offsets is None:
                yield from lines
                return
            offsets[0] = f.tell()
            for item in lines:
                yield item
                offsets[0] = f.tell()
        except OSError as exc:
            yield 0, TimelineFormatError(name, 0, f"cannot read file: {exc.strerror or exc}")


def iter_timeline(
    path: str | Path, *, payloads: Payloads = True, offsets: list[int] | None = None,
    start: tuple[int, int] = (0, 0),
) -> Iterator[TimelineLine | TimelineFormatError]:
    """Stream the lines of a timeline file; bad lines (and a missing file) are errors.

    ``payloads=False`` skips decoding payloads (every line's ``payload`` is None),
    ``payloads="text"`` decodes only their ``text`` and ``is_final`` (see :func:`iter_values`);
    ``offsets`` and ``start`` as in :func:`iter_values`.
    """
    name = str(path)
    for number, value in iter_values(path, payloads=payloads, offsets=offsets, start=start):
        yield value if isinstance(value, TimelineFormatError) else _shape(name, number, value)


def read_timeline(path: str | Path) -> tuple[list[TimelineLine], list[TimelineFormatError]]:
    """Decode every line of a timeline file; bad lines become errors, never exceptions."""
    lines: list[TimelineLine] = []
    errors: list[TimelineFormatError] = []
    for item in iter_timeline(path):
        if isinstance(item, TimelineFormatError):
            errors.append(item)
        else:
            lines.append(item)
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
