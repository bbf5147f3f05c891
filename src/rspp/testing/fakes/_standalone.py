"""Every fake provider server at once, in a background thread, with the environment to use them.

``rspp run`` and ``rspp serve`` read ``*_BASE_URL`` and ``*_API_KEY`` variables
(``rspp.providers.ADAPTERS``), so a spec naming real providers runs unchanged
against the fakes::

    with FakeProviderServers() as fakes:
        subprocess.run(["rspp", "run", "pipelines/examples/cloud_openai.yaml", ...],
                       env={**os.environ, **fakes.env})

``python -m rspp.testing.fakes`` serves them until interrupted and prints the
``export`` lines for a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rspp.testing.fakes._http_fakes import FakeAnthropic, FakeOpenAI, echo_reply
from rspp.testing.fakes._server import serve_asgi
from rspp.testing.fakes._ws_fakes import FakeDeepgram, FakeElevenLabs

__all__ = ["FakeProviderServers"]


class FakeProviderServers:
    """OpenAI (chat + speech), Anthropic, Deepgram and ElevenLabs fakes on loopback.

    Each fake checks its vendor's auth header against ``api_key`` (``None``: no
    check, like a local model server). ``env`` holds the base URL and key
    variables of every adapter once the block is entered.
    """

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        reply: Callable[[list[dict[str, Any]]], str] = echo_reply,
        transcript: str = "what is the weather like today",
    ) -> None:
        self.api_key = api_key
        self.openai = FakeOpenAI(api_key=api_key, reply=reply)
        self.anthropic = FakeAnthropic(api_key=api_key, reply=reply)
        self.deepgram = FakeDeepgram(api_key=api_key, transcript=transcript)
        self.elevenlabs = FakeElevenLabs(api_key=api_key)
        self.env: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as stack:
            openai = await stack.enter_async_context(serve_asgi(self.openai.app))
            anthropic = await stack.enter_async_context(serve_asgi(self.anthropic.app))
            deepgram = await stack.enter_async_context(self.deepgram.serve())
            elevenlabs = await stack.enter_async_context(self.elevenlabs.serve())
            urls = {"OPENAI": f"{openai}/v1", "ANTHROPIC": anthropic, "DEEPGRAM": deepgram,
                    "ELEVENLABS": elevenlabs}
            env = {f"{vendor}_BASE_URL": url for vendor, url in urls.items()}
            if self.api_key is not None:
                env.update({f"{vendor}_API_KEY": self.api_key for vendor in urls})
            self.env = env
            self._ready.set()
            await self._stop.wait()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the thread that waits in __enter__
            self._error = exc
        finally:
            self._ready.set()

    def __enter__(self) -> FakeProviderServers:
        self._thread = threading.Thread(target=self._main, name="fake-providers", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None or not self.env:
            self._thread.join()
            raise RuntimeError(f"fake provider servers failed to start: {self._error!r}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already finished
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()

    def exports(self) -> str:
        """``export NAME=VALUE`` lines for a POSIX shell."""
        return "\n".join(f"export {k}={v}" for k, v in sorted(self.env.items()))
