"""A provider that echoes its API key cannot leak it: not to stdout/stderr, timeline, logs, traces.

The LLM is a fake OpenAI server (real HTTP/SSE on loopback) that echoes the
``Authorization`` header it receives: in an error body (first request, which
the runtime turns into a provider error, signal reasons and a printed warning)
and in the streamed reply text (which the runtime records in event payloads and
attributes at L2 and prints as the reply). ``rspp run`` resolves the
key from ``env://`` for the session and scrubs its value from every string it
records or prints - at recording level L2, with JSON logs and spans written.
(The STT edges get roomy buffers so a loaded machine cannot drop the question.)
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeOpenAI
from rspp.testing.fakes._server import serve_asgi

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


class EchoingOpenAI(FakeOpenAI):
    """Echoes the Authorization header back: an error first, then in the streamed reply."""

    def __init__(self) -> None:
        super().__init__(token_delay_s=0.0)
        self.seen: list[str] = []

    async def chat(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        self.seen.append(auth)
        if len(self.seen) == 1:  # retryable upstream error whose body quotes the header
            return self._error(500, "server_error", f"upstream rejected {auth}", None)
        self.reply = lambda _messages: f"your header was {auth}, remember it"
        return await super().chat(request)


SPEC = voice_assistant_spec("leaky", head="profile: simple/v1", vad="params: {engine: energy}",
                            providers="""\
  stt: {primary: pocketsphinx, timeout_ms: 30000}
  llm:
    primary: openai
    timeout_ms: 30000
    config: {api_key: "env://RSPP_E2E_LEAKY_KEY", base_url: "%s/v1", model: fake}
  tts: {primary: espeak, timeout_ms: 30000}""",
                            buffers={"stt.audio": "{max_queue_ms: 60000, max_queue_items: 100000}",
                                     "stt.vad": "{max_queue_ms: 60000}"})


async def test_echoed_api_key_appears_nowhere(spoken: dict[str, Path], tmp_path: Path) -> None:
    # a run of digits inside the key, as random keys often have: the built-in phone rule
    # matches it, and must not cut the key into pieces the secret scrub no longer finds
    key = f"sk-e2e-{secrets.token_hex(8)}55501001234{secrets.token_hex(8)}"
    fake = EchoingOpenAI()
    out: dict[str, Path] = {name: tmp_path / name for name in
                            ("t.jsonl", "log.jsonl", "trace.jsonl", "metrics.txt", "r.wav")}
    async with serve_asgi(fake.app) as url:
        spec = tmp_path / "leaky.yaml"
        spec.write_text(SPEC % url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from rspp.cli import main; main()", "run", str(spec),
            "--input", str(spoken["question"]), "--record-level", "L2",
            "--timeline", str(out["t.jsonl"]), "--log-out", str(out["log.jsonl"]),
            "--trace-out", str(out["trace.jsonl"]), "--metrics-out", str(out["metrics.txt"]),
            "--output", str(out["r.wav"]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
            env={**os.environ, "RSPP_E2E_LEAKY_KEY": key},
        )
        stdout_b, stderr_b = await asyncio.wait_for(proc.communicate(), timeout=240)
    stdout, stderr = stdout_b.decode(), stderr_b.decode()
    assert proc.returncode == 0, stdout + stderr
    assert fake.seen, stdout + stderr
    assert all(seen == f"Bearer {key}" for seen in fake.seen)  # the key was sent
    assert len(fake.seen) >= 2, "the error and the streamed echo both happened"
    texts: dict[str, Any] = {"stdout": stdout, "stderr": stderr}
    texts.update({name: path.read_text(encoding="utf-8", errors="replace")
                  for name, path in out.items() if name != "r.wav"})
    pieces = {key[i:i + 12] for i in range(len(key) - 11)}  # any 12 characters of it
    for name, text in texts.items():
        assert key not in text, f"the API key leaked into {name}"
        leaked = sorted(piece for piece in pieces if piece in text)
        assert not leaked, f"part of the API key leaked into {name}: {leaked[:3]}"
    assert "[REDACTED]" in stdout  # the echoed reply is printed, scrubbed
    assert "[REDACTED]" in texts["t.jsonl"]  # and recorded (L2 payloads), scrubbed
