"""Durable timeline sinks: JSON Lines (default) and length-prefixed MessagePack.

A sink receives batches of timeline lines as builtins
(``{"kind": K, "record": {...}, "payload": {...}}``) and persists them. A file
sink is a :class:`LocalAppendSink`: each batch is one ``os.write`` to the file,
opened once in append mode, on the caller's thread (a page-cache append, no fsync:
it takes microseconds, and once it returned a SIGKILL of the process cannot lose
the lines). That is what lets the exporter put a turn's terminal record into the
file before the record goes on to the client (:meth:`TimelineExporter.flush_now`).

MessagePack framing: each line is one msgpack map preceded by its length as a
4-byte big-endian unsigned integer (read back by :func:`rspp.observability.read_timeline`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

__all__ = ["JsonLinesFileSink", "LocalAppendSink", "MsgpackFileSink", "TimelineSink"]

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


class TimelineSink(Protocol):
    """Where the exporter writes batches; raising means the batch is retried."""

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class LocalAppendSink(TimelineSink, Protocol):
    """A sink that can also write a batch synchronously (a local file)."""

    def write_now(self, lines: Sequence[Mapping[str, object]]) -> None:
        """Append ``lines`` before returning (raises ``OSError`` when it cannot)."""


class _FileSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._closed = False

    def _encode(self, lines: Sequence[Mapping[str, object]]) -> bytes:
        raise NotImplementedError

    def write_now(self, lines: Sequence[Mapping[str, object]]) -> None:
        data = memoryview(self._encode(lines))
        if self._closed:
            raise OSError(f"timeline sink {self.path} is closed")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        while data:
            data = data[os.write(self._fd, data):]

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        self.write_now(lines)

    async def close(self) -> None:
        self._closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class JsonLinesFileSink(_FileSink):
    """One JSON object per line (bytes are base64 strings)."""

    def _encode(self, lines: Sequence[Mapping[str, object]]) -> bytes:
        return b"".join(_json.encode(line) + b"\n" for line in lines)


class MsgpackFileSink(_FileSink):
    """Length-prefixed MessagePack maps (bytes stay binary)."""

    def _encode(self, lines: Sequence[Mapping[str, object]]) -> bytes:
        parts = []
        for line in lines:
            body = _msgpack.encode(line)
            parts.append(struct.pack(">I", len(body)) + body)
        return b"".join(parts)
