"""Adapter factories for the conformance suite: every adapter of a kind, offline or
backed by its fake server, plus a way to make each one fail."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rspp.providers import Outcome, Provider, ProviderMetricsRecorder, Secret
from rspp.providers.offline import EspeakTTS, LocalResponderLLM, PocketsphinxSTT
from rspp.providers.remote import (
    AnthropicLLM,
    DeepgramSTT,
    ElevenLabsTTS,
    OpenAIChatLLM,
    OpenAICompletionsLLM,
    OpenAITTS,
)
from rspp.testing.fakes import (
    FakeAnthropic,
    FakeDeepgram,
    FakeElevenLabs,
    FakeOpenAI,
    Fault,
    serve_asgi,
)

KEY = "sk-conformance-0123456789"


@dataclass
class AdapterUnderTest:
    provider: Provider
    recorder: ProviderMetricsRecorder
    #: arrange for the next call to fail; returns the outcome it must normalise to
    make_fail: Callable[[], Awaitable[tuple[Provider, Outcome, dict[str, Any]]]]


@contextlib.asynccontextmanager
async def build(name: str) -> AsyncIterator[AdapterUnderTest]:
    rec = ProviderMetricsRecorder()
    key = Secret(KEY)
    if name == "local-responder":

        async def fail_local() -> tuple[Provider, Outcome, dict[str, Any]]:
            slow = LocalResponderLLM(token_delay_ms=500, metrics=rec)
            return slow, Outcome.TIMEOUT, {"timeout_ms": 50}

        yield AdapterUnderTest(LocalResponderLLM(token_delay_ms=1, metrics=rec), rec, fail_local)
    elif name == "pocketsphinx":

        async def fail_ps() -> tuple[Provider, Outcome, dict[str, Any]]:
            return PocketsphinxSTT(metrics=rec), Outcome.BAD_REQUEST, {"stereo": True}

        yield AdapterUnderTest(PocketsphinxSTT(metrics=rec), rec, fail_ps)
    elif name == "espeak":

        async def fail_es() -> tuple[Provider, Outcome, dict[str, Any]]:
            return EspeakTTS(voice="no-such-voice", metrics=rec), Outcome.BAD_REQUEST, {}

        yield AdapterUnderTest(EspeakTTS(metrics=rec), rec, fail_es)
    elif name in ("openai", "openai-tts", "anthropic", "openai-completions",
                  "openai-completions-batched"):
        fake: Any = FakeAnthropic(api_key=KEY) if name == "anthropic" else FakeOpenAI(api_key=KEY)
        async with serve_asgi(fake.app) as url:
            if name == "openai":
                provider: Any = OpenAIChatLLM(base_url=url + "/v1", api_key=key, metrics=rec)
            elif name.startswith("openai-completions"):  # batched: a batch of one, at once
                provider = OpenAICompletionsLLM(
                    base_url=url + "/v1", api_key=key, metrics=rec, batching={
                        "max_batch_size": 1} if name.endswith("batched") else None)
            elif name == "openai-tts":
                provider = OpenAITTS(base_url=url + "/v1", api_key=key, metrics=rec)
            else:
                provider = AnthropicLLM(base_url=url, api_key=key, metrics=rec)

            async def fail_http() -> tuple[Provider, Outcome, dict[str, Any]]:
                fake.faults.push(Fault("status", status=429, retry_after=1))
                return provider, Outcome.RATE_LIMITED, {"retry_after_s": 1.0}

            try:
                yield AdapterUnderTest(provider, rec, fail_http)
            finally:
                await provider.aclose()
    elif name in ("deepgram", "elevenlabs"):
        wsfake: Any = (
            FakeDeepgram(api_key=KEY) if name == "deepgram" else FakeElevenLabs(api_key=KEY)
        )
        async with wsfake.serve() as url:
            if name == "deepgram":
                provider = DeepgramSTT(base_url=url, api_key=key, metrics=rec)
            else:
                provider = ElevenLabsTTS(base_url=url, api_key=key, metrics=rec)

            async def fail_ws() -> tuple[Provider, Outcome, dict[str, Any]]:
                wsfake.faults.push(Fault("status", status=429, retry_after=1))
                return provider, Outcome.RATE_LIMITED, {"retry_after_s": 1.0}

            yield AdapterUnderTest(provider, rec, fail_ws)
    else:  # pragma: no cover - guards the parametrisation
        raise ValueError(name)


@pytest.fixture
def adapter_factory() -> Callable[[str], Any]:
    return build


#: an external node program (the ``rspp_external`` SDK) that upper-cases text; ``BROKEN``
#: picks a contract it breaks: ``stop`` (keeps running after stop), ``cancel`` (never
#: answers a cancelled call), ``stdout`` (prints onto the frame stream)
NODE_PROGRAM = '''
import asyncio, sys, time
import rspp_external
from rspp_external import run

BROKEN = sys.argv[1] if len(sys.argv) > 1 else ""

if BROKEN == "cancel":  # every call takes 6 s and a cancel is never heard
    _frame = rspp_external._Child.on_frame
    rspp_external._Child.on_frame = (
        lambda self, msg: True if msg.get("type") == "cancel" else _frame(self, msg))

async def handle(event, emit):
    if BROKEN == "cancel":
        await asyncio.sleep(6)
    emit(str(event.payload).upper())

if BROKEN == "stdout":
    sys.stdout.write("hello from the node\\n")
    sys.stdout.flush()
run(handle)
if BROKEN == "stop":
    time.sleep(3600)
'''


@pytest.fixture
def node_package(tmp_path: Any) -> Callable[..., Any]:
    """``node_package(broken="")``: a package directory's manifest path (no SBOM or
    attestation: the conformance suite checks the boundary, not the supply chain)."""
    import json

    def make(broken: str = "") -> Any:
        root = tmp_path / f"pkg-{broken or 'good'}"
        root.mkdir()
        (root / "node.py").write_text(NODE_PROGRAM)
        manifest = {"name": f"shout-{broken or 'good'}", "version": "1.2.0",
                    "command": ["{python}", "node.py", *([broken] if broken else [])],
                    "artifact": "node.py", "inputs": {"text": "text"},
                    "outputs": {"text": "text"}}
        (root / "rspp-node.json").write_text(json.dumps(manifest))
        return root / "rspp-node.json"

    return make
