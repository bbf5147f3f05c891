"""Fixtures of the provider unit tests: a manual clock and a scripted LLM adapter.

``ScriptedLLM`` is a real :class:`~rspp.providers.LLMProvider` adapter (a fake
implementing the public hook), not a mock of RSPP code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rspp.providers import LLMProvider, LLMRequest, Outcome, ProviderCallError, ProviderInvocation
from rspp.providers._types import Capabilities, ProviderKind


class ManualClock:
    """Clock whose time moves only when sleeping or when a test advances it."""

    def __init__(self) -> None:
        self.now_ns = 1_000_000_000

    def monotonic_ns(self) -> int:
        return self.now_ns

    def wall_ms(self) -> int:
        return 1_700_000_000_000 + self.now_ns // 1_000_000

    async def sleep(self, seconds: float) -> None:
        self.now_ns += int(seconds * 1e9)
        await asyncio.sleep(0)

    def advance_ms(self, ms: float) -> None:
        self.now_ns += int(ms * 1e6)


class ScriptedLLM(LLMProvider):
    """Yields ``reply`` word by word, or fails with the next scripted outcome."""

    capabilities = Capabilities(kind=ProviderKind.LLM)

    def __init__(self, provider_id: str, *, reply: str = "ok then", **kwargs: Any) -> None:
        super().__init__(provider_id, **kwargs)
        self.reply = reply
        self.script: list[Outcome | None] = []
        self.calls = 0

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        self.calls += 1
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise ProviderCallError(
                f"scripted {outcome.value}", outcome=outcome, code=f"scripted_{outcome.value}"
            )
        for i, word in enumerate(self.reply.split()):
            await asyncio.sleep(0)
            yield word if i == 0 else " " + word


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def scripted() -> type[ScriptedLLM]:
    return ScriptedLLM
