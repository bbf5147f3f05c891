"""A small live-session client (protocol ``rspp.v1``, docs/protocol/websocket.md).

::

    async with await LiveClient.connect(url, token=token) as client:
        sender = asyncio.create_task(client.stream_pcm(pcm, 16000))
        async for item in client.events():
            if isinstance(item, AudioOut):
                ...  # item.data: 20 ms of reply audio (PCM16), paced in real time
            elif isinstance(item, Transcript):
                print(item.text)

A refused connection (bad/expired token, wrong session, bad ``start``) raises
:class:`SessionRefusedError` with the server's close code and reason.

Fencing (protocol 1.2): every event of a served session is of a lease epoch (``ready``
names the connection's, an ``epoch`` event names it again whenever it changes). The
client remembers the highest epoch it has seen of the session (an :class:`EpochFence`,
shared by every connection of one session, e.g. :class:`~rspp.client.FailoverClient`'s)
and refuses any output of a lower epoch: it is counted in :attr:`LiveClient.refused` and
never yielded. A runtime that lost its lease may have sent it; the resource (this
client) checks the fencing token, whatever the runtime did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from rspp.errors import RSPPError
from rspp.transports import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    AudioIn,
    AudioOut,
    CaptureDebug,
    End,
    EndOfUtterance,
    EpochEvent,
    ErrorEvent,
    Interrupt,
    Ready,
    ServerEvent,
    Start,
    Stats,
    TextIn,
    decode_server,
    encode_message,
)

__all__ = ["EpochFence", "LiveClient", "SessionRefusedError"]

#: events that are no output of an epoch (never refused): the connection's own bookkeeping
_NOT_OUTPUT = (Ready, EpochEvent, Stats)


class EpochFence:
    """The highest lease epoch seen of one session, across its connections."""

    def __init__(self) -> None:
        self.highest = 0

    def see(self, epoch: int | None) -> None:
        if epoch is not None and epoch > self.highest:
            self.highest = epoch

    def stale(self, epoch: int | None) -> bool:
        """Outputs of ``epoch`` are of a superseded epoch (None: not a served session)."""
        return epoch is not None and epoch < self.highest


class SessionRefusedError(RSPPError):
    """The server refused the session; ``code`` is the WebSocket close code."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"session refused ({code}): {reason}")
        self.code = code
        self.reason = reason


class LiveClient:
    """One client connection of a live session (see the module docstring)."""

    def __init__(self, ws: ClientConnection, ready: Ready, *, msgpack: bool,
                 sequenced: bool, sample_rate: int, fence: EpochFence | None = None) -> None:
        self.ws = ws
        self.ready = ready
        self.msgpack = msgpack
        self.sequenced = sequenced
        self.sample_rate = sample_rate
        #: the highest epoch seen of the session (shared with its other connections)
        self.fence = fence if fence is not None else EpochFence()
        #: the epoch of this connection's next events (``ready``, then ``epoch`` events)
        self.epoch = ready.lease_epoch
        #: the runtime's send-time stamp of the last ``epoch`` event (wall ms)
        self.marked_at_ms: int | None = None
        self.fence.see(self.epoch)
        #: outputs refused: of an epoch lower than the highest seen (by event type)
        self.refused = 0
        self.refused_kinds: dict[str, int] = {}
        #: told every output as it arrives and whether it was refused (diagnostics)
        self.on_output: Callable[[ServerEvent, bool], None] | None = None
        self._seq = 0
        self.close_code: int | None = None
        self.close_reason: str = ""

    @classmethod
    async def connect(cls, url: str, *, token: str | None = None, sample_rate: int = 16000,
                      output_sample_rate: int | None = None, msgpack: bool = False,
                      sequenced: bool = False, token_in_query: bool = False,
                      client_name: str = "rspp-client",
                      open_timeout: float = 10.0,
                      fence: EpochFence | None = None,
                      compression: bool = False,
                      events: Sequence[str] | None = None) -> LiveClient:
        """Connect, send ``start`` and wait for ``ready``; raises SessionRefusedError.

        ``events``: subscribe by event type (protocol 1.3, ``start.events``): the server
        sends only events of these types (``audio``, ``text``, ``control``, ``metrics``,
        ``debug``, ``error``) plus its protocol events; None: every event.

        ``compression``: offer ``permessage-deflate`` (the runtime negotiates it when
        served with ``--ws-compression events|all``; :attr:`compressed` says whether it did).
        """
        headers: list[tuple[str, str]] = []
        if token is not None and token_in_query:
            url += ("&" if "?" in url else "?") + f"token={token}"
        elif token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        protos: Sequence[Subprotocol] = [Subprotocol(SUBPROTOCOL_MSGPACK if msgpack
                                                     else SUBPROTOCOL_JSON)]
        try:
            ws = await websockets.connect(url, additional_headers=headers, subprotocols=protos,
                                          open_timeout=open_timeout, max_size=2**20,
                                          proxy=None,
                                          compression="deflate" if compression else None)
        except InvalidStatus as exc:
            raise SessionRefusedError(exc.response.status_code,
                                      f"HTTP {exc.response.status_code} at {url}") from None
        except (OSError, InvalidHandshake) as exc:
            raise SessionRefusedError(None, f"cannot connect to {url}: {exc}") from None
        start = Start(sample_rate=sample_rate, output_sample_rate=output_sample_rate,  # type: ignore[arg-type]
                      sequenced=sequenced, client=client_name,
                      events=list(events) if events is not None else None)  # type: ignore[arg-type]
        try:
            await ws.send(encode_message(start, msgpack=True) if msgpack
                          else encode_message(start).decode())
            while True:
                raw = await asyncio.wait_for(ws.recv(), open_timeout)
                ev = decode_server(raw, msgpack=msgpack)
                if isinstance(ev, Ready):
                    return cls(ws, ev, msgpack=msgpack, sequenced=sequenced,
                               sample_rate=sample_rate, fence=fence)
                if isinstance(ev, ErrorEvent) and ev.fatal:
                    break
        except ConnectionClosed:
            pass
        except TimeoutError:
            await ws.close()
            raise SessionRefusedError(None, f"no `ready` from {url} within "
                                      f"{open_timeout:g} s") from None
        await ws.wait_closed()
        code = ws.close_code
        reason = ws.close_reason or "closed before ready"
        raise SessionRefusedError(code, reason)

    @property
    def compressed(self) -> bool:
        """The runtime negotiated ``permessage-deflate`` on this connection (F-031)."""
        return any(ext.name == "permessage-deflate" for ext in self.ws.protocol.extensions)

    async def __aenter__(self) -> LiveClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --------------------------------------------------------------- input
    async def send_audio(self, pcm: bytes, seq: int | None = None) -> None:
        """One frame of PCM16 at the declared rate.

        ``seq``: the frame's number (sequenced and MessagePack connections), e.g. to replay
        a network's reordering, duplicates and losses; by default the next one.
        """
        if seq is None:
            seq, self._seq = self._seq, self._seq + 1
        else:
            self._seq = max(self._seq, seq + 1)
        if self.msgpack:
            await self.ws.send(encode_message(AudioIn(seq=seq, data=pcm), msgpack=True))
        elif self.sequenced:
            await self.ws.send(seq.to_bytes(4, "big") + pcm)
        else:
            await self.ws.send(pcm)

    async def stream_pcm(self, pcm: bytes, sample_rate: int | None = None, *,
                         frame_ms: int = 20, real_time: bool = True,
                         inserts: Sequence[tuple[float, bytes]] = ()) -> None:
        """Stream PCM16 in ``frame_ms`` frames, paced in real time.

        ``inserts``: (seconds, pcm) mixed into the stream from that offset (a barge-in).
        """
        import numpy as np

        rate = sample_rate or self.sample_rate
        n = rate * frame_ms // 1000 * 2
        mixed = bytearray(pcm)
        for at_s, extra in inserts:
            off = int(at_s * rate) * 2
            end = off + len(extra)
            if end > len(mixed):
                mixed.extend(b"\x00" * (end - len(mixed)))
            a = np.frombuffer(bytes(mixed[off:end]), dtype=np.int16).astype(np.int32)
            b = np.frombuffer(extra, dtype=np.int16).astype(np.int32)
            mixed[off:end] = np.clip(a + b, -32768, 32767).astype(np.int16).tobytes()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, i in enumerate(range(0, len(mixed), n)):
            frame = bytes(mixed[i:i + n])
            if len(frame) < n:
                frame += b"\x00" * (n - len(frame))
            await self.send_audio(frame)
            if real_time:
                delay = t0 + (k + 1) * frame_ms / 1000 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)

    async def send_text(self, text: str, id: str | None = None) -> None:
        """Typed input; ``id``: its idempotency key (the session takes it at most once)."""
        await self._send(TextIn(text=text, id=id))

    async def interrupt(self) -> None:
        await self._send(Interrupt())

    async def end_of_utterance(self) -> None:
        """Push-to-talk release: the utterance ends now, without waiting for the VAD."""
        await self._send(EndOfUtterance())

    async def capture_debug(self, seconds: float = 60.0) -> None:
        """Have the server record this session's debug events for ``seconds`` (F-076)."""
        await self._send(CaptureDebug(seconds=seconds))

    async def end(self) -> None:
        """No more input: the server finishes pending turns, then closes."""
        await self._send(End())

    async def _send(self, msg: TextIn | Interrupt | EndOfUtterance | CaptureDebug | End
                    ) -> None:
        if self.msgpack:
            await self.ws.send(encode_message(msg, msgpack=True))
        else:
            await self.ws.send(encode_message(msg).decode())

    # -------------------------------------------------------------- output
    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events until the server closes; reply audio arrives as :class:`AudioOut`.

        (JSON variant: binary frames, numbered here, without a turn id; MessagePack: as sent.)
        Outputs of an epoch lower than the highest seen of the session are refused (counted
        in :attr:`refused`, not yielded); ``epoch`` events are yielded.
        """
        k = 0
        fence = self.fence
        try:
            async for raw in self.ws:
                ev: ServerEvent
                if isinstance(raw, bytes) and not self.msgpack:
                    k += 1
                    ev = AudioOut(seq=k, data=raw)
                else:
                    ev = decode_server(raw, msgpack=self.msgpack)
                    if isinstance(ev, _NOT_OUTPUT):
                        if isinstance(ev, EpochEvent):
                            self.epoch, self.marked_at_ms = ev.lease_epoch, ev.sent_at_ms
                            fence.see(ev.lease_epoch)
                        yield ev
                        continue
                stale = fence.stale(self.epoch)
                if self.on_output is not None:
                    self.on_output(ev, stale)
                if stale:  # fenced here: an output of a superseded epoch
                    self.refused += 1
                    kind = type(ev).__name__
                    self.refused_kinds[kind] = self.refused_kinds.get(kind, 0) + 1
                    continue
                yield ev
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.close_reason = self.ws.close_reason or ""

    async def close(self) -> None:
        await self.ws.close()
        self.close_code = self.ws.close_code
        self.close_reason = self.ws.close_reason or ""
