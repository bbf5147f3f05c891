"""Run the control plane's HTTP server on a background thread (tests, local runner)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType

import uvicorn

from rspp.controlplane._app import create_app
from rspp.controlplane._config import ControlPlaneSettings
from rspp.controlplane._errors import Unavailable
from rspp.controlplane._service import ControlPlane
from rspp.controlplane._util import Clock, wall_ms


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class ControlPlaneServer:
    """``with ControlPlaneServer(settings) as srv:`` serves on ``srv.url`` until exit."""

    def __init__(
        self,
        settings: ControlPlaneSettings,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        clock: Clock = wall_ms,
    ) -> None:
        self.settings = settings
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._clock = clock
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.control_plane: ControlPlane | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rspp-cp-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=60) or self._error is not None:
            self.stop()
            raise Unavailable(
                f"control plane server did not start: {self._error!r}", field="server"
            )

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        cp = await ControlPlane.open(self.settings, clock=self._clock)
        self.control_plane = cp
        self._loop = asyncio.get_running_loop()
        try:
            config = uvicorn.Config(
                create_app(cp), host=self.host, port=self.port, log_level="warning", lifespan="off"
            )
            self._server = uvicorn.Server(config)
            serve = asyncio.create_task(self._server.serve())
            # uvicorn exposes only a `started` flag, no event to await.
            while not self._server.started and not serve.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            self._ready.set()
            await serve
        finally:
            await cp.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self.control_plane is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: stopped already
                self._loop.call_soon_threadsafe(self.control_plane.stopping)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def __enter__(self) -> ControlPlaneServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_serving(server: uvicorn.Server, cp: ControlPlane) -> None:
    """Begin a graceful stop (in the server's loop): uvicorn stops accepting and finishes
    the requests in flight, and the long polls among them answer now instead of waiting
    their ``wait_ms`` out (a runtime's control channel holds one for up to 10 s)."""
    server.should_exit = True
    cp.stopping()
