"""Shared helpers for benchmark scripts (each prints one JSON line last)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def quick_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the ``--quick`` flag every benchmark takes."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 60 s)")
    return parser


async def run_all(
    runners: Sequence[Callable[[int, random.Random], Awaitable[None]]], turns: int, seed: int
) -> None:
    """Run every ``runner(turns, rng)`` concurrently, each with its own seeded RNG."""
    rng = random.Random(seed)
    gc.collect()
    async with asyncio.TaskGroup() as tg:
        for run in runners:
            tg.create_task(run(turns, random.Random(rng.random())))


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc, falling back to ru_maxrss)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100.0 * (len(s) - 1))))
    return s[k]


def start_fake_providers() -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``python -m rspp.testing.fakes`` in a child process (its CPU is not this process's)
    and the environment naming it (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ...)."""
    proc = subprocess.Popen([sys.executable, "-m", "rspp.testing.fakes"],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    env: dict[str, str] = {}
    for line in proc.stdout or ():
        name, _, value = line.removeprefix("export ").strip().partition("=")
        env[name] = value
        if "OPENAI_BASE_URL" in env and "OPENAI_API_KEY" in env:
            break
    return proc, env


def emit(result: dict[str, Any]) -> None:
    """Print the final JSON line."""
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------ load generator clients
class WsClient(asyncio.Protocol):
    """One cheap WebSocket client connection for load generators.

    The ``websockets`` sans-I/O client protocol (real handshake, masked frames, ping and
    close handling) on a bare asyncio protocol: no task per connection, messages are
    handed to ``on_message(data, arrival)`` from ``data_received`` with the
    ``time.monotonic()`` they arrived at, and sends write to the socket at once.

    Sends on an open connection skip the protocol's frame objects: each message is
    written as one masked frame, with one random mask key per connection (a load
    generator's choice; the server unmasks every frame the same way), and the frame of
    the payload sent last is kept: a client sending the same 20 ms frame 50 times a
    second writes it without re-masking it. The runtime receives the same frames, at
    a fraction of the client's CPU (the clients share the runtime's cores).
    """

    def __init__(self, url: str, on_message: Callable[[bytes | str, float], None],
                 subprotocols: Sequence[str] = ()) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.proto = ClientProtocol(parse_uri(url),
                                    subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
                                    max_size=None)
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self._time = time.monotonic  # loop.time() of uvloop has 1 ms resolution
        self._key = os.urandom(4)
        #: the payload sent last and its frame on the wire
        self._last: bytes | None = None
        self._last_frame = b""

    @classmethod
    async def open(cls, url: str, on_message: Callable[[bytes | str, float], None],
                   subprotocols: Sequence[str] = ()) -> WsClient:
        from websockets.uri import parse_uri

        uri = parse_uri(url)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: cls(url, on_message, subprotocols),
                                               uri.host, uri.port)
        await conn.opened
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        from websockets.frames import Opcode
        from websockets.http11 import Response

        now = self._time()
        self.proto.receive_data(data)
        for ev in self.proto.events_received():
            if isinstance(ev, Response):
                if self.proto.handshake_exc is not None:
                    self.opened.set_exception(self.proto.handshake_exc)
                elif not self.opened.done():
                    self.opened.set_result(None)
            elif ev.opcode is Opcode.BINARY:
                self.on_message(bytes(ev.data), now)
            elif ev.opcode is Opcode.TEXT:
                self.on_message(bytes(ev.data).decode(), now)
        self._flush()

    def _flush(self) -> None:
        t = self.transport
        if t is None:
            return
        for chunk in self.proto.data_to_send():
            if chunk:
                t.write(chunk)
            else:  # the protocol wants the TCP connection closed
                t.close()
        if self.proto.close_expected():
            t.close()

    @property
    def close_reason(self) -> str | None:
        """``code reason`` of the server's close frame (None: none received)."""
        rcvd = self.proto.close_rcvd
        return None if rcvd is None else f"{rcvd.code} {rcvd.reason}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))

    def send(self, data: bytes | str) -> bool:
        """Send one message now; False when the connection is closed."""
        t = self.transport
        if self.closed or t is None or t.is_closing():
            return False
        if data is self._last:
            t.write(self._last_frame)
            return True
        from websockets.protocol import State

        if self.proto.state is not State.OPEN:
            return False
        if isinstance(data, str):
            frame = self._frame(0x81, data.encode())
        else:
            frame = self._last_frame = self._frame(0x82, data)
            self._last = data
        t.write(frame)
        return True

    def _frame(self, head: int, payload: bytes) -> bytes:
        """One masked, unfragmented frame (RFC 6455 5.2)."""
        try:
            from websockets.speedups import apply_mask
        except ImportError:  # pragma: no cover - websockets without its C extension
            from websockets.utils import apply_mask
        n = len(payload)
        if n < 126:
            size = bytes((head, 0x80 | n))
        elif n < 65536:
            size = bytes((head, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            size = bytes((head, 0x80 | 127)) + n.to_bytes(8, "big")
        return size + self._key + apply_mask(payload, self._key)

    def close(self) -> None:
        if not self.closed and self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(Exception):
                self.proto.send_close(1000)
                self._flush()
            self.transport.close()


async def send_ticks(n: int, frames: int, send: Callable[[int, int], None], *,
                     period_s: float = 0.020, slots: int = 10,
                     at_frame: Callable[[int], None] | None = None) -> None:
    """Real-time sends from one timer: ``send(k, f)`` for client k's frame f.

    Client k sends frame f at ``t0 + f * period_s + (k % slots) * period_s / slots``:
    independent clients' 20 ms ticks are not aligned, so the clients are spread over
    ``slots`` phases of the period (one timer wake per slot, not per client).
    ``at_frame(f)`` runs before frame f's first slot.
    """
    loop = asyncio.get_running_loop()
    groups = [range(s, n, slots) for s in range(slots)]
    step = period_s / slots
    t0 = loop.time() + period_s
    for f in range(frames):
        if at_frame is not None:
            at_frame(f)
        for s, group in enumerate(groups):
            delay = t0 + f * period_s + s * step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for k in group:
                send(k, f)
