"""Durable timeline sinks: JSON Lines (default) and length-prefixed MessagePack.

A sink receives batches of timeline lines as builtins
(``{"kind": K, "record": {...}, "payload": {...}}``) and persists them. File
writes run in a worker thread (``asyncio.to_thread``) so the event loop never
blocks on disk I/O.

MessagePack framing: each line is one msgpack map preceded by its length as a
4-byte big-endian unsigned integer (read back by :func:`rspp.observability.read_timeline`).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import msgspec

__all__ = ["JsonLinesFileSink", "MsgpackFileSink", "TimelineSink"]

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


class TimelineSink(Protocol):
    """Where the exporter writes batches; raising means the batch is retried."""

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None: ...

    async def close(self) -> None: ...


class _FileSink:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _encode(self, lines: Sequence[Mapping[str, object]]) -> bytes:
        raise NotImplementedError

    def _append(self, data: bytes) -> None:
        with self.path.open("ab") as handle:
            handle.write(data)

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        data = self._encode(lines)
        await asyncio.to_thread(self._append, data)

    async def close(self) -> None:
        return None


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
