"""The guarded stream always consumes the outcome of its pending pull.

An adapter stream that ends (``StopAsyncIteration``) while the consumer is being
cancelled twice (a hard cancel after a soft one) must not leave a task whose
exception nobody retrieved ("Task exception was never retrieved").
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rspp.providers import LLMProvider, LLMRequest, ProviderInvocation
from rspp.providers._types import Capabilities, ChatMessage, ProviderKind

pytestmark = pytest.mark.unit


class EndsWhenCancelled(LLMProvider):
    """Yields one word, then waits; a cancellation ends the stream after a last hop."""

    capabilities = Capabilities(kind=ProviderKind.LLM)

    def __init__(self) -> None:
        super().__init__("ends-when-cancelled")
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        yield "hello"
        try:
            self.waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()  # winds down slowly, then ends the stream
        return


async def test_stream_ending_after_a_double_cancel_leaves_no_unretrieved_task() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        provider = EndsWhenCancelled()
        stream = provider.stream(LLMRequest(messages=(ChatMessage("user", "hi"),)))
        got: list[str] = []

        async def consume() -> None:
            async for word in stream:
                got.append(word)

        consumer = asyncio.create_task(consume())
        await provider.waiting.wait()
        consumer.cancel()  # soft: the guard cancels its pull and waits for it
        for _ in range(5):
            await asyncio.sleep(0)
        consumer.cancel()  # hard: the guard stops waiting for the pull
        with pytest.raises(asyncio.CancelledError):
            await consumer
        provider.release.set()  # the pull now ends with StopAsyncIteration
        for _ in range(5):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert got == ["hello"]
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))], reported
