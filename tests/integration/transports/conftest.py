"""Live-session fixtures: the WebSocket route on a real uvicorn server (127.0.0.1, port 0).

Sessions come from the local session factory (the ``rspp run`` assembly of the
offline voice assistant); tokens are real HS256 session tokens of the control
plane's issuer, verified through the control plane's verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from rspp.controlplane._errors import TokenInvalid
from rspp.controlplane._tokens import TokenIssuer, TokenKeys, TokenVerifier
from rspp.runner import LocalFactoryOptions, LocalSessionFactory, compile_spec_file
from rspp.server._wsproto import LeanWebSocketProtocol
from rspp.transports import (
    CLOSE_UNAUTHORIZED,
    LiveOptions,
    SessionGrant,
    SessionHub,
    TokenRefused,
    WebRTCEndpoint,
    WebRTCOptions,
    twilio_stream_route,
    webrtc_route,
    websocket_route,
)

REPO = Path(__file__).resolve().parents[3]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
KEYS = TokenKeys.hs256("integration-test-secret-0123456789abcdef")


class ControlPlaneTokens:
    """The control plane's token verifier behind the transport's TokenVerifier port."""

    def __init__(self, keys: TokenKeys) -> None:
        self._verifier = TokenVerifier(keys.verification_keys())

    async def __call__(self, token: str, session_id: str) -> SessionGrant:
        try:
            c = self._verifier.verify(token)
        except TokenInvalid as exc:
            raise TokenRefused(str(exc), CLOSE_UNAUTHORIZED) from None
        return SessionGrant(session_id=c.session_id, tenant_id=c.tenant_id,
                            lease_epoch=c.lease_epoch, pipeline_name=c.pipeline_name,
                            pipeline_version=c.pipeline_version, runtime_id=c.runtime_id,
                            expires_at_s=c.expires_at_s)


def _issue(session_id: str, tenant_id: str = "acme", ttl_s: int = 300,
           keys: TokenKeys = KEYS) -> str:
    token, _ = TokenIssuer(keys).issue(session_id=session_id, tenant_id=tenant_id,
                                       runtime_id="rt-1", pipeline_name="voice-assistant",
                                       pipeline_version="1.0.0", lease_epoch=1, ttl_s=ttl_s)
    return token


@dataclass
class LiveServer:
    base: str
    hub: SessionHub
    factory: LocalSessionFactory
    spec: Path
    webrtc: WebRTCEndpoint | None = None
    server: uvicorn.Server | None = None

    def url(self, session_id: str) -> str:
        return f"{self.base}/v1/sessions/{session_id}/ws"

    @property
    def phone_url(self) -> str:
        return f"{self.base}/v1/telephony/twilio/stream"


def patient_spec(path: Path, source: Path = VOICE) -> Path:
    """The offline assistant with room for a loaded machine, and typed input (``input.text``).

    With both cores busy the offline STT runs slower than real time: a 20 s turn budget,
    20 s provider timeouts and a deep VAD -> STT edge keep turns from ending on time or
    load-dependent drops,
    which these transport tests are not about (budgets are still enforced, so a replay
    reproduces the session).
    """
    text = source.read_text()
    for old, new in (
        ("nodes:\n", "budgets:\n  turn_ms: 20000\n\nnodes:\n"),
        ("  stt:\n    primary: pocketsphinx\n",
         "  stt:\n    primary: pocketsphinx\n    timeout_ms: 20000\n"),
        ("tts: {primary: espeak}", "tts: {primary: espeak, timeout_ms: 20000}"),
        ("  - {from: stt.final, to: llm.text}",
         "  - {from: stt.final, to: said.in}\n  - {from: input.text, to: said.in}\n"
         "  - {from: said.out, to: llm.text}"),
        ("  - id: segmenter\n",
         "  - id: said\n    type: merge\n    params: {rule: arrival_order, rule_version: \"1.0\"}\n"
         "  - id: segmenter\n"),
        ("  - {from: vad.audio, to: stt.audio}",
         "  - {from: vad.audio, to: stt.audio, buffer: {max_queue_ms: 20000, "
         "max_queue_items: 5000, max_latency_contribution_ms: 20000}}"),
    ):
        assert old in text, old  # the example spec changed: update this edit
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


@contextlib.asynccontextmanager
async def live_server(tmp: Path, live: LiveOptions | None = None,
                      sndbuf: int | None = None, source: Path = VOICE,
                      webrtc: WebRTCOptions | None = None,
                      as_is: bool = False) -> AsyncIterator[LiveServer]:
    """The WebSocket, telephony media-streams and WebRTC routes over one session hub.

    ``source`` is made patient (:func:`patient_spec`) unless ``as_is``."""
    spec = source if as_is else patient_spec(tmp / f"{source.stem}_patient.yaml", source)
    factory = LocalSessionFactory(compile_spec_file(spec), LocalFactoryOptions(
        timeline_dir=tmp, live=live or LiveOptions()))
    hub = SessionHub(factory)
    tokens = ControlPlaneTokens(KEYS)
    rtc = webrtc_route(hub, tokens, options=webrtc)
    app = Starlette(routes=[websocket_route(hub, tokens), twilio_stream_route(hub, tokens), rtc])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical",
                            lifespan="off", ws=LeanWebSocketProtocol, access_log=False,
                            ws_ping_interval=None,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sndbuf is not None:  # accepted connections inherit it: a small kernel send buffer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind(("127.0.0.1", 0))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(f"ws://127.0.0.1:{port}", hub, factory, spec,
                         rtc.webrtc, server)  # type: ignore[attr-defined]
    finally:
        await hub.aclose()
        server.should_exit = True
        await asyncio.wait({task})
        sock.close()


@pytest.fixture(scope="session")
def speech() -> dict[str, tuple[bytes, int]]:
    """Spoken test utterances (offline espeak-ng, 16 kHz)."""
    from rspp.providers.offline import EspeakTTS

    async def say(text: str) -> bytes:
        tts = EspeakTTS(sample_rate=16000, voice="en-us", words_per_minute=160)
        return b"".join([c.pcm async for c in tts.synthesize(text)])

    async def both() -> dict[str, tuple[bytes, int]]:
        return {"question": (await say("what is the weather like today"), 16000),
                "interrupt": (await say("what is your name"), 16000)}

    return asyncio.run(both())


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[LiveServer]]:
    def make(live: LiveOptions | None = None, sndbuf: int | None = None, source: Path = VOICE,
             webrtc: WebRTCOptions | None = None, as_is: bool = False
             ) -> contextlib.AbstractAsyncContextManager[LiveServer]:
        return live_server(tmp_path, live, sndbuf, source, webrtc, as_is)

    return make


def rspp(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``rspp`` command line in a child process."""
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO)


def assert_replays(timeline: Path, spec: Path) -> dict[str, int]:
    """The timeline validates and ``rspp replay`` (playback) finds no divergence that counts."""
    valid = rspp("contracts", "validate", str(timeline))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    report = timeline.with_suffix(".replay.json")
    out = rspp("replay", str(timeline), "--spec", str(spec), "--mode", "playback",
               "--report", str(report))
    doc = json.loads(report.read_text())
    divergences: dict[str, int] = doc["divergences"]
    assert all(divergences[c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")), \
        out.stdout
    assert out.returncode == 0, out.stdout + out.stderr
    return divergences


@pytest.fixture
def issue() -> Callable[..., str]:
    """``issue(session_id, tenant_id="acme", ttl_s=300, keys=KEYS)``: a signed session token."""
    return _issue


def record_deliveries(session: Any, seen: list[tuple[str, Any]], n: int) -> asyncio.Event:
    """Append ``(kind, sample_index)`` of every event the session's ``deliver_now`` takes to
    ``seen`` (an instance attribute over the method: ``del session.deliver_now`` ends it);
    the returned event is set at the ``n``-th."""
    reached = asyncio.Event()
    deliver = session.deliver_now

    def spy(ev: Any, port: str = "audio", admitted: Any = None) -> Any:
        seen.append((ev.kind, ev.sample_index))
        if len(seen) == n:
            reached.set()
        return deliver(ev, port, admitted)

    session.deliver_now = spy
    return reached


async def writer_waits(transport: Any) -> Any:
    """The connection's outbound queue once its writer waits for an item."""
    async with asyncio.timeout(60):
        while True:
            q = transport.queue
            waiter = getattr(q, "_waiter", None)
            if waiter is not None and not waiter.done() and not len(q):
                return q
            await asyncio.sleep(0.01)
