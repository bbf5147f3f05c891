"""Optional ``permessage-deflate`` on the WebSocket transport, metered (F-031).

``rspp serve --ws-compression`` decides what a client that offers
``permessage-deflate`` (RFC 7692) gets:

* ``off`` (the default): the extension is never negotiated; every connection keeps
  the lean frame path (:mod:`rspp.server._wsproto`);
* ``events``: negotiated; the JSON/MessagePack event messages (transcripts, reply
  text, turn events) are compressed, the binary audio frames are sent as they are
  (RFC 7692 lets an endpoint leave any message uncompressed: PCM hardly deflates, and
  compressing it would cost CPU on every 20 ms frame);
* ``all``: negotiated; every message the runtime sends is compressed.

Compression lives in the transport only: what a session's nodes see and emit, and what
the timeline records, does not change. The cost is metered per process (bytes before
and after deflate each way, and the CPU time the codec took: ``time.thread_time``
around each encode and decode) and exported on ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.typing import ExtensionName, ExtensionParameter

__all__ = ["COMPRESSION_MODES", "CompressionCollector", "CompressionMode", "CompressionStats",
           "compressing_protocol"]

CompressionMode = Literal["off", "events", "all"]
COMPRESSION_MODES: tuple[CompressionMode, ...] = ("off", "events", "all")

_clock = time.thread_time_ns


@dataclass(slots=True)
class CompressionStats:
    """What ``permessage-deflate`` did in this process (only compressed messages count)."""

    connections: int = 0
    out_raw: int = 0
    out_wire: int = 0
    out_cpu_ns: int = 0
    #: outgoing messages left uncompressed by the ``events`` mode (audio)
    out_passed: int = 0
    in_raw: int = 0
    in_wire: int = 0
    in_cpu_ns: int = 0


class _MeteredDeflate(Extension):
    """A negotiated ``PerMessageDeflate`` that meters its work and, in ``events`` mode,
    leaves binary messages uncompressed (RSV1 clear)."""

    name = ExtensionName("permessage-deflate")

    def __init__(self, inner: Extension, stats: CompressionStats, events_only: bool) -> None:
        self.inner = inner
        self.stats = stats
        self.events_only = events_only
        self._passing = False  # the message being sent goes uncompressed (continuations)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
            return frame
        t0 = _clock()
        out = self.inner.decode(frame, max_size=max_size)
        if out is not frame:
            st = self.stats
            st.in_cpu_ns += _clock() - t0
            st.in_wire += len(frame.data)
            st.in_raw += len(out.data)
        return out

    def encode(self, frame: Frame) -> Frame:
        op = frame.opcode
        if op in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
            return frame
        if op is not Opcode.CONT:
            self._passing = self.events_only and op is Opcode.BINARY
        st = self.stats
        if self._passing:
            st.out_passed += 1
            return frame
        t0 = _clock()
        out = self.inner.encode(frame)
        st.out_cpu_ns += _clock() - t0
        st.out_raw += len(frame.data)
        st.out_wire += len(out.data)
        return out

    def __repr__(self) -> str:
        return f"MeteredDeflate({self.inner!r}, events_only={self.events_only})"


class _MeteredDeflateFactory(ServerPerMessageDeflateFactory):
    def __init__(self, stats: CompressionStats, events_only: bool) -> None:
        # uvicorn's own settings (small windows and memory: many connections per process)
        super().__init__(server_max_window_bits=12, client_max_window_bits=12,
                         compress_settings={"memLevel": 5})
        self.stats = stats
        self.events_only = events_only

    def process_request_params(  # type: ignore[override]
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        response, ext = super().process_request_params(params, accepted_extensions)
        self.stats.connections += 1
        return response, _MeteredDeflate(ext, self.stats, self.events_only)


def compressing_protocol(base: type[Any], mode: CompressionMode,
                         stats: CompressionStats) -> type[Any]:
    """``base`` (uvicorn's ``websockets-sansio`` protocol or a subclass) offering the
    metered ``permessage-deflate`` of ``mode`` to clients that ask for it, or no
    extension at all (``off``)."""
    events_only = mode == "events"

    class CompressingProtocol(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn.available_extensions = (
                [] if mode == "off" else [_MeteredDeflateFactory(stats, events_only)])

    CompressingProtocol.__name__ = CompressingProtocol.__qualname__ = \
        f"{base.__name__}_{mode}"
    return CompressingProtocol


class CompressionCollector(Collector):
    """``/metrics`` series of :class:`CompressionStats`, read at scrape time."""

    def __init__(self, stats: CompressionStats, mode: CompressionMode) -> None:
        self.stats = stats
        self.mode = mode

    def collect(self) -> Iterator[Metric]:
        st = self.stats
        conns = CounterMetricFamily(
            "rspp_ws_compression_connections", "WebSocket connections that negotiated "
            "permessage-deflate (rspp serve --ws-compression)", labels=["mode"])
        conns.add_metric([self.mode], st.connections)
        size = CounterMetricFamily(
            "rspp_ws_compression_bytes", "Payload bytes of compressed WebSocket messages, "
            "before (raw) and after (wire) deflate", labels=["direction", "form"])
        for direction, raw, wire in (("out", st.out_raw, st.out_wire),
                                     ("in", st.in_raw, st.in_wire)):
            size.add_metric([direction, "raw"], raw)
            size.add_metric([direction, "wire"], wire)
        cpu = CounterMetricFamily(
            "rspp_ws_compression_cpu_seconds", "Thread CPU time spent compressing (out) and "
            "decompressing (in) WebSocket messages", labels=["direction"])
        cpu.add_metric(["out"], st.out_cpu_ns / 1e9)
        cpu.add_metric(["in"], st.in_cpu_ns / 1e9)
        passed = CounterMetricFamily(
            "rspp_ws_compression_passed_messages", "Messages sent uncompressed on a "
            "compressing connection (binary audio under --ws-compression events)", labels=["mode"])
        passed.add_metric([self.mode], st.out_passed)
        yield from (conns, size, cpu, passed)
