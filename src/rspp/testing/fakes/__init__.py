"""Fake provider servers speaking the real wire protocols, on loopback (public, reusable).

Each fake records requests and takes scripted :class:`Fault`\\ s (HTTP status with
``Retry-After``, stall, mid-stream disconnect, close codes, in-stream errors)::

    fake = FakeOpenAI(api_key="sk-test")
    fake.faults.push(Fault("status", status=429, retry_after=0.01))
    async with serve_asgi(fake.app) as base_url:
        ...  # point OpenAIChatLLM(base_url=base_url + "/v1") at it

:class:`FakeProviderServers` runs all of them in a background thread and gives the
``*_BASE_URL``/``*_API_KEY`` environment that makes ``rspp run`` use them
(``python -m rspp.testing.fakes`` does the same from a shell).
"""

from rspp.testing.fakes._faults import Fault, FaultPlan, RecordedRequest, tone_pcm
from rspp.testing.fakes._http_fakes import (
    FakeAnthropic,
    FakeOpenAI,
    echo_completion,
    echo_reply,
)
from rspp.testing.fakes._server import serve_asgi, serve_websocket
from rspp.testing.fakes._standalone import FakeProviderServers
from rspp.testing.fakes._ws_fakes import FakeDeepgram, FakeElevenLabs

__all__ = [
    "FakeAnthropic",
    "FakeDeepgram",
    "FakeElevenLabs",
    "FakeOpenAI",
    "FakeProviderServers",
    "Fault",
    "FaultPlan",
    "RecordedRequest",
    "echo_completion",
    "echo_reply",
    "serve_asgi",
    "serve_websocket",
    "tone_pcm",
]
