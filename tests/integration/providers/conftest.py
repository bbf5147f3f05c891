"""Fixtures: real fake provider servers on loopback and env-referenced test keys."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rspp.testing.fakes import (
    FakeAnthropic,
    FakeDeepgram,
    FakeElevenLabs,
    FakeOpenAI,
    serve_asgi,
)

TEST_KEY = "sk-rspp-test-0123456789abcdef"


@pytest.fixture
def api_key_ref(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RSPP_FAKE_PROVIDER_KEY", TEST_KEY)
    return "env://RSPP_FAKE_PROVIDER_KEY"


@pytest.fixture
async def openai_fake() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI(api_key=TEST_KEY)
    async with serve_asgi(fake.app) as url:
        yield fake, url + "/v1"


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[tuple[FakeAnthropic, str]]:
    fake = FakeAnthropic(api_key=TEST_KEY)
    async with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture
async def deepgram_fake() -> AsyncIterator[tuple[FakeDeepgram, str]]:
    fake = FakeDeepgram(api_key=TEST_KEY)
    async with fake.serve() as url:
        yield fake, url


@pytest.fixture
async def elevenlabs_fake() -> AsyncIterator[tuple[FakeElevenLabs, str]]:
    fake = FakeElevenLabs(api_key=TEST_KEY)
    async with fake.serve() as url:
        yield fake, url
