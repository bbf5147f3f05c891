"""Circuit-breaker and fallback events of a running session carry context, not secrets (F-136).

A session through :func:`rspp.runner.run_local` (what ``rspp run`` calls) whose LLM is the
OpenAI adapter pointed at :class:`~rspp.testing.fakes.FakeOpenAI` on loopback answering
503: the first failure opens the circuit (threshold 1.0, one call), the turn falls back
to the local LLM. The ``circuit_event`` names the provider, the transition, the error
code and outcome that caused it and the policy's thresholds; ``provider_error`` and
``provider_switch`` name provider, code and cause. Neither the API key nor the request
(the user's words, the system prompt) appears in those records, in the timeline file
or in the JSON log lines.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from rspp.kernel import VirtualClock
from rspp.providers import CircuitRegistry, CircuitState
from rspp.providers.offline import EspeakTTS
from rspp.runner import RunOptions, run_local
from rspp.testing.fakes import FakeOpenAI, Fault, serve_asgi
from rspp.transports import write_wav

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
KEY_ENV = "RSPP_TEST_CIRCUIT_CONTEXT_KEY"
SECRET = "sk-circuit-ctx-5f1c9a7e"
PROMPT = "Answer as the zebra-crossing assistant"


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    async def synth() -> bytes:
        tts = EspeakTTS(sample_rate=16000)
        return b"".join([c.pcm async for c in tts.synthesize("what is the weather like today")])

    wav = tmp_path_factory.mktemp("circuit") / "q.wav"
    write_wav(wav, asyncio.run(synth()) + b"\x00\x00" * 16 * 300, 16000)
    return wav


@pytest.fixture
async def failing(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    srv = FakeOpenAI(api_key=SECRET)
    srv.faults.sticky = Fault("status", status=503)
    async with serve_asgi(srv.app) as base:
        yield srv, base


def _spec(tmp: Path, base: str) -> Path:
    data = json.loads(json.dumps(YAML(typ="safe").load(VOICE.read_text())))
    data["providers"]["llm"] = {"primary": "openai", "fallbacks": ["local"], "config": {
        "base_url": f"{base}/v1", "api_key": f"env://{KEY_ENV}",
        "circuit": {"window": 4, "min_calls": 1, "error_rate_threshold": 1.0,
                    "cooldown_ms": 30_000},
        "retry": {"max_retries": 0}}}
    for node in data["nodes"]:
        if node["id"] == "llm":
            node.setdefault("params", {})["system_prompt"] = PROMPT
    for edge in data["edges"]:  # a busy machine decodes slowly: queue the STT audio
        if edge["to"] == "stt.audio":
            edge["buffer"] = {"max_queue_items": 5000, "max_queue_ms": 120_000,
                              "max_queue_bytes": 4_000_000}
    path = tmp / "spec.json"
    path.write_text(json.dumps(data))
    return path


async def test_circuit_and_fallback_events_name_provider_code_thresholds_not_payloads(
    question: Path, failing: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    srv, base = failing
    circuits = CircuitRegistry(VirtualClock(auto_advance=False))
    timeline, logs = tmp_path / "tl.jsonl", tmp_path / "log.jsonl"
    result = await run_local(RunOptions(spec=_spec(tmp_path, base), input=question,
                                        timeline=timeline, log_out=logs, session_id="cb",
                                        circuits=circuits))
    (turn,) = result.turns
    assert turn.terminal == "commit" and "weather" in turn.reply  # the fallback answered
    assert "weather" in turn.transcript
    (request,) = srv.requests  # the request really carried the prompt and the user's words
    sent = json.dumps(request.body)
    assert PROMPT in sent and "weather" in sent
    assert circuits.states()["openai"] is CircuitState.OPEN

    text = timeline.read_text()
    records = [json.loads(x)["record"] for x in text.splitlines()]
    named = {name: [r for r in records if r.get("signal") == name]
             for name in ("circuit_event", "provider_error", "provider_switch")}
    (opened,) = named["circuit_event"]
    reason = opened["reason"]
    for part in ("closed->open", "provider=openai", "error_rate=1.00", "threshold=1.00",
                 "min_calls=1", "window=1/4", "cooldown_ms=30000", "last_error=503",
                 "outcome=overload"):
        assert part in reason, (part, reason)
    assert opened["turn_id"] == turn.turn_id and opened["emitted_by"] == "RK-11"
    assert opened.get("provider_invocation_id")
    (error,) = named["provider_error"]
    assert "provider=openai" in error["reason"] and "code=503" in error["reason"]
    assert "circuit=open" in error["reason"]
    (switch,) = named["provider_switch"]
    assert "from=openai" in switch["reason"] and "to=local" in switch["reason"]
    # no request payload, no secret in the activation events ...
    for rec in (opened, error, switch):
        body = json.dumps(rec)
        assert SECRET not in body and PROMPT not in body and "weather" not in body, rec
    # ... nor anywhere in the timeline or the logs (the transcript is the STT's output and
    # may be recorded; the key and the prompt are request material and may not)
    log_text = logs.read_text()
    assert SECRET not in text and SECRET not in log_text
    assert PROMPT not in text and PROMPT not in log_text
    warned = [json.loads(x) for x in log_text.splitlines() if "openai" in x]
    assert warned, log_text[-2000:]
    assert not [w for w in warned if "weather" in json.dumps(w)], warned
