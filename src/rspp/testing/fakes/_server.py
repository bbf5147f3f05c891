"""Run an ASGI app (uvicorn) or a WebSocket handler on 127.0.0.1, ephemeral port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
import websockets
from starlette.types import ASGIApp

__all__ = ["serve_asgi", "serve_websocket"]


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` on loopback for the duration of the block; yields ``http://host:port``."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def serve_websocket(
    handler: Callable[[websockets.ServerConnection], Awaitable[None]],
    *,
    process_request: Callable[..., Any] | None = None,
) -> AsyncIterator[str]:
    """Serve a WebSocket handler on loopback; yields ``ws://host:port``."""
    async with websockets.serve(
        handler, "127.0.0.1", 0, process_request=process_request, max_size=2**22
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
