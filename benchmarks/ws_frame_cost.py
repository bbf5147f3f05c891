"""Runtime CPU per audio frame on the WebSocket path, without sockets (robust on a busy machine).

``ws_sessions.py`` measures capacity with real sockets and client processes; on a
loaded machine its clients starve and its numbers say little. This benchmark keeps
everything of the runtime's per-frame path but the kernel's socket work: N sessions
of ws_sessions' mock pipeline (VAD -> STT -> LLM -> TTS, a reply of 25 paced frames
per 3 s cycle) behind the real endpoint (``websocket_route``, ``LiveTransport``, the
shared pacer) and the protocol ``rspp serve`` runs (``LeanWebSocketProtocol``), each
connection on an in-memory transport. Every 20 ms (real time) one masked 20 ms frame
per session goes into its protocol's ``data_received``, and the loop runs until every
reader waits again; the replies are paced and written to the in-memory transports.
``cpu_us_per_frame``: this thread's CPU time per audio frame in or out (thread time:
another process's load does not count); ``gc_*`` as in ws_sessions.py.

``--no-sink``: the protocol offers no frame sink (every frame is an ASGI message for
the connection's reader task, as before the direct path): back-to-back A/B.

Usage: ``python benchmarks/ws_frame_cost.py [--quick] [--sessions 200] [--seconds 10]
[--no-sink]``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick_parser
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri
from ws_sessions import GcProbe, MockFactory, _frames, _open_grant

from rspp.server._loop import loop_name, settle_heap
from rspp.server._loop import run as run_loop
from rspp.server._wsproto import LeanWebSocketProtocol
from rspp.transports import FRAME_SINK, SUBPROTOCOL_JSON, SessionHub, Start, encode_message


class NoSink(LeanWebSocketProtocol):
    """The lean protocol without the frame sink (``--no-sink``)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope: Any = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].pop(FRAME_SINK, None)


class MemTransport(asyncio.Transport):
    """A connection's socket, in memory: what the server writes is counted, not sent."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self._info = {"sockname": ("127.0.0.1", 8800), "peername": ("127.0.0.1", port)}
        self.writes = 0
        self.data = bytearray()
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._info.get(name, default)

    def write(self, data: Any) -> None:
        self.writes += 1
        if len(self.data) < 4096:  # the handshake and the first events (ready)
            self.data += data

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        ...  # (everything written is taken at once)

    def get_write_buffer_size(self) -> int:
        return 0

    def resume_reading(self) -> None: ...


def wire(op: Opcode, data: bytes) -> bytes:
    return Frame(op, data).serialize(mask=True, extensions=[])


async def measure(n: int, seconds: float, sink: bool) -> dict[str, Any]:
    import uvicorn
    from starlette.applications import Starlette
    from uvicorn.server import ServerState

    from rspp.transports import websocket_route

    loop = asyncio.get_running_loop()
    hub = SessionHub(MockFactory())
    app = Starlette(routes=[websocket_route(hub, _open_grant)])
    proto_cls = LeanWebSocketProtocol if sink else NoSink
    config = uvicorn.Config(app, log_level="critical", lifespan="off", ws=proto_cls,
                            access_log=False, ws_ping_interval=None)
    config.load()
    state = ServerState()
    threshold = gc.get_threshold()
    protos: list[Any] = []
    for k in range(n):
        proto = proto_cls(config, state, {}, _loop=loop)
        proto.connection_made(MemTransport(40000 + k))
        client = ClientProtocol(parse_uri(f"ws://127.0.0.1:8800/v1/sessions/m{k}/ws?token=x"),
                                subprotocols=[SUBPROTOCOL_JSON])  # type: ignore[list-item]
        client.send_request(client.connect())
        proto.data_received(b"".join(client.data_to_send()))
        protos.append(proto)
    async with asyncio.timeout(120):
        while not all(p.handshake_complete for p in protos):  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.01)
        start = wire(Opcode.TEXT, encode_message(Start(sample_rate=16000)))
        for p in protos:
            p.data_received(start)
        while len(hub.sessions) < n or not all(  # noqa: ASYNC110 - polled: no event
                b'"ready"' in p.transport.data for p in protos):
            await asyncio.sleep(0.01)
    settle_heap()  # as ``rspp serve`` does once started
    frame = wire(Opcode.BINARY, bytes(640))
    probe = GcProbe()
    gc.callbacks.append(probe)
    warm = 150
    rounds = warm + int(seconds * 50)
    t0 = loop.time()
    cpu0 = frames0 = 0.0
    late = 0
    for r in range(rounds):
        if r == warm:
            cpu0, frames0, probe.on = time.thread_time(), _frames(hub), True
        due = t0 + r * 0.02
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        else:
            late += 1
        for p in protos:
            p.data_received(frame)
        for _ in range(4):  # the readers and the sessions' tasks run
            await asyncio.sleep(0)
    cpu = time.thread_time() - cpu0
    frames = _frames(hub) - frames0
    probe.on = False
    gc.callbacks.remove(probe)
    ts = [h.transport for h in hub.sessions.values()]
    result = {
        "sessions": n, "sink": sink, "rounds": rounds - warm, "late_rounds": late,
        "frames_in": sum(t.meter.frames for t in ts),
        "frames_out": sum(t.frames_out for t in ts),
        "cpu_us_per_frame": round(cpu * 1e6 / max(frames, 1), 2),
        "cpu_ms_per_session_s": round(cpu * 1000 / (n * (rounds - warm) * 0.02), 3),
        **probe.summary(),
        "load_average": round(os.getloadavg()[0], 2), "event_loop": loop_name(),
    }
    for p in protos:
        p.connection_lost(None)
    await hub.aclose()
    gc.unfreeze()
    gc.set_threshold(*threshold)
    return result


async def main(n: int, seconds: float, sink: bool) -> None:
    point = await measure(n, seconds, sink)
    print(point, flush=True)
    emit({"benchmark": "ws_frame_cost", **point})


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", type=int, default=None, help="sessions (default 200)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="measured seconds (default 10, --quick 3)")
    ap.add_argument("--no-sink", action="store_true",
                    help="the protocol offers no frame sink (A/B)")
    a = ap.parse_args()
    run_loop(main(a.sessions or (50 if a.quick else 200), a.seconds or (3.0 if a.quick else 10.0),
                  not a.no_sink))
