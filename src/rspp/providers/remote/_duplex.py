"""A vendor's duplex streaming WebSocket (Deepgram STT, ElevenLabs TTS): the upload half
runs as a task beside the receive loop, and a close the server sends becomes one
normalised :class:`~rspp.providers.ProviderCallError`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from websockets.exceptions import ConnectionClosed

from rspp.providers._outcome import Outcome, ProviderCallError

__all__ = ["closed_error", "uploading"]


@contextlib.asynccontextmanager
async def uploading(upload: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Future[None]]:
    """Run ``upload`` (the sending half) as a task while the caller receives; on the way
    out it is cancelled if still running and awaited, and its error marked retrieved (the
    receive loop reports it, see :func:`asyncio.Future.exception`)."""
    sender = asyncio.ensure_future(upload)
    try:
        yield sender
    finally:
        if not sender.done():
            sender.cancel()
        # asyncio.wait never raises the sender's error or cancellation, but a
        # cancellation of *this* task still propagates (never swallowed).
        await asyncio.wait({sender})
        if not sender.cancelled():
            sender.exception()


def closed_error(exc: ConnectionClosed, provider: str, what: str,
                 policy: Callable[[str], Outcome]) -> ProviderCallError:
    """The error of a stream the server closed under the caller: ``<what>: <reason>``, code
    ``ws_close_<code>``; a 1008 close (policy violation: a refused key, a bad request)
    takes ``policy(reason)`` as its outcome, any other close is ``DISCONNECTED``."""
    frame = exc.rcvd
    code = frame.code if frame is not None else None
    reason = (frame.reason if frame is not None else "") or ""
    return ProviderCallError(
        f"{what}: {reason or 'no reason'}"[:200],
        outcome=policy(reason) if code == 1008 else Outcome.DISCONNECTED,
        provider=provider,
        code=f"ws_close_{code}",
    )
