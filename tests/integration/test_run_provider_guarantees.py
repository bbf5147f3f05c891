"""Provider guarantees in running sessions: circuit breaker (F-057), budget-bound retries (F-059).

Sessions run through :func:`rspp.runner.run_local` (what ``rspp run`` calls) with
real offline engines for speech; the LLM is the OpenAI adapter pointed at
:class:`~rspp.testing.fakes.FakeOpenAI` on loopback (real HTTP, scripted 503s),
which counts every request it receives. The circuit registry is the runtime's:
one instance shared by every session, timed by an injected virtual clock.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from rspp.kernel import VirtualClock
from rspp.observability import RuntimeMetrics
from rspp.providers import CircuitRegistry, CircuitState
from rspp.providers.offline import EspeakTTS
from rspp.runner import RunOptions, RunResult, TelemetryTargets, run_local
from rspp.testing.fakes import FakeOpenAI, Fault, serve_asgi
from rspp.transports import write_wav

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
KEY_ENV = "RSPP_TEST_GUARANTEE_KEY"


async def _synth(text: str) -> bytes:
    tts = EspeakTTS(sample_rate=16000)
    return b"".join([c.pcm async for c in tts.synthesize(text)])


def _silence(ms: int) -> bytes:
    return b"\x00\x00" * (16 * ms)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("guarantees")

    weather = asyncio.run(_synth("what is the weather like today"))
    one = d / "one.wav"
    write_wav(one, weather + _silence(300), 16000)
    return {"one": one}


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeOpenAI, str]]:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    srv = FakeOpenAI(api_key="sk-test")
    async with serve_asgi(srv.app) as base:
        yield srv, base


def _spec(tmp: Path, llm: dict[str, Any], budgets: dict[str, int] | None = None) -> Path:
    data = json.loads(json.dumps(YAML(typ="safe").load(VOICE.read_text())))
    data["providers"]["llm"] = llm
    for edge in data["edges"]:  # a busy machine decodes slowly: queue the STT audio, never drop
        if edge["to"] == "stt.audio":
            edge["buffer"] = {"max_queue_items": 5000, "max_queue_ms": 120_000,
                              "max_queue_bytes": 4_000_000}
    if budgets:
        data["budgets"] = budgets
    path = tmp / "spec.json"
    path.write_text(json.dumps(data))
    return path


def _openai(base: str, **policy: object) -> dict[str, object]:
    return {"base_url": f"{base}/v1", "api_key": f"env://{KEY_ENV}", **policy}


async def _run(spec: Path, wav: Path, tmp: Path, sid: str,
               **kw: Any) -> tuple[RunResult, list[dict[str, Any]]]:
    tl = tmp / f"{sid}.jsonl"
    result = await run_local(RunOptions(spec=spec, input=wav, timeline=tl, session_id=sid, **kw))
    lines = [json.loads(x) for x in tl.read_text().splitlines() if x.strip()]
    return result, [ln["record"] for ln in lines if ln["kind"] == "control_signal"]


def _named(signals: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in signals if s["signal"] == name]


async def test_circuit_opens_across_turns_skips_the_provider_and_probes_after_cooldown(
    wavs: dict[str, Path], fake: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    srv, base = fake
    srv.faults.sticky = Fault("status", status=503)
    spec = _spec(tmp_path, {"primary": "openai", "fallbacks": ["local"], "config": _openai(
        base, circuit={"window": 4, "min_calls": 2, "error_rate_threshold": 1.0,
                       "cooldown_ms": 30_000},
        retry={"max_retries": 0})})
    clock = VirtualClock(auto_advance=False)
    circuits = CircuitRegistry(clock)  # the runtime's registry, shared by its sessions

    # Two sessions of the runtime, one turn each: each turn calls openai once (503) and
    # falls back to the local LLM; the second failure opens the circuit.
    turns = []
    metrics = RuntimeMetrics()
    for n, sid in enumerate(("s1", "s2"), start=1):
        result, sig = await _run(spec, wavs["one"], tmp_path, sid, circuits=circuits,
                                 telemetry=TelemetryTargets(metrics=metrics))
        assert [t.terminal for t in result.turns] == ["commit"]
        assert "weather" in result.turns[0].reply and "You asked" not in result.turns[0].reply
        assert len(srv.requests) == n
        assert len(_named(sig, "provider_error")) == 1
        turns.append((result.turns[0].turn_id, _named(sig, "circuit_event")))
    assert turns[0][1] == []
    opened = turns[1][1]
    assert [s["reason"].split()[1] for s in opened] == ["closed->open"]
    assert opened[0]["emitted_by"] == "RK-11" and "provider=openai" in opened[0]["reason"]
    assert opened[0]["turn_id"] == turns[1][0]  # the second turn's failure opened it
    scraped = metrics.scrape().decode()  # the transition is counted, labelled by provider
    assert ('rspp_provider_circuit_transitions_total{pipeline_version="voice-assistant@1.0.0",'
            'provider="openai",state="open"} 1.0') in scraped
    states = circuits.states()
    assert states["openai"] is CircuitState.OPEN and states["local"] is CircuitState.CLOSED

    # The next turn (a third session of the runtime) skips openai without calling it.
    second, sig2 = await _run(spec, wavs["one"], tmp_path, "s3", circuits=circuits)
    assert [t.terminal for t in second.turns] == ["commit"]
    assert "weather" in second.turns[0].reply and "You asked" not in second.turns[0].reply
    assert len(srv.requests) == 2
    switches = _named(sig2, "provider_switch")
    assert len(switches) == 1 and "from=openai to=local cause=circuit_open" in switches[0]["reason"]
    assert _named(sig2, "provider_error") == [] and _named(sig2, "circuit_event") == []

    # After the cool-down (injected clock) the provider recovered: one probe goes through.
    clock.advance(30_000)
    srv.faults.clear()
    third, sig3 = await _run(spec, wavs["one"], tmp_path, "s4", circuits=circuits)
    assert [t.terminal for t in third.turns] == ["commit"]
    assert len(srv.requests) == 3
    assert third.turns[0].reply.startswith("You asked")
    moves = [s["reason"].split()[1] for s in _named(sig3, "circuit_event")]
    assert moves == ["open->half_open", "half_open->closed"]
    assert circuits.states()["openai"] is CircuitState.CLOSED


async def test_remaining_turn_budget_ends_retries_with_the_budget_outcome(
    wavs: dict[str, Path], fake: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    """The server asks to retry after 120 s; the 30 s turn budget cannot cover that wait."""
    srv, base = fake
    srv.faults.sticky = Fault("status", status=503, retry_after=120)
    spec = _spec(tmp_path, {"primary": "openai", "timeout_ms": 10_000, "config": _openai(
        base, retry={"max_retries": 3, "max_ms": 300_000})}, budgets={"turn_ms": 30_000})
    result, sig = await _run(spec, wavs["one"], tmp_path, "b1", real_time=True)
    assert len(srv.requests) == 1  # no retry was started: the backoff exceeds the budget
    assert [(t.terminal, t.reason) for t in result.turns] == [("abort", "budget_exhausted")]
    tid = result.turns[0].turn_id
    exhausted = _named(sig, "budget_exhausted")
    assert len(exhausted) == 1
    ex = exhausted[0]
    assert ex["emitted_by"] == "RK-17" and ex["turn_id"] == tid
    assert "provider=openai" in ex["reason"] and "after a 120000 ms backoff" in ex["reason"]
    remaining = int(ex["reason"].split("remaining_budget_ms=")[1].split()[0])
    assert 0 < remaining < 30_000
    assert len(_named(sig, "provider_error")) == 1
    aborts = _named(sig, "abort")
    assert [a["reason"] for a in aborts] == ["budget_exhausted"]
    # the failure path cancels the turn's scope and says why (F-035): reason code timeout
    assert [c["reason"].split(":")[0] for c in _named(sig, "cancel")
            if c["scope"] == "turn"] == ["timeout"]
    assert _named(sig, "close")


async def test_a_failed_provider_cancels_the_turn_with_reason_provider_error(
    wavs: dict[str, Path], fake: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    """No fallback, the provider fails: the turn aborts and its cancel says provider_error."""
    srv, base = fake
    srv.faults.sticky = Fault("status", status=503)
    spec = _spec(tmp_path, {"primary": "openai", "config": _openai(
        base, retry={"max_retries": 0})})
    metrics = RuntimeMetrics()
    result, sig = await _run(spec, wavs["one"], tmp_path, "pe1",
                             telemetry=TelemetryTargets(metrics=metrics))
    assert len(srv.requests) == 1
    assert [t.terminal for t in result.turns] == ["abort"]
    tid = result.turns[0].turn_id
    cancels = [c for c in _named(sig, "cancel") if c["turn_id"] == tid and c["scope"] == "turn"]
    assert [c["reason"].split(":")[0] for c in cancels] == ["provider_error"]
    assert cancels[0]["emitted_by"] == "RK-16" and cancels[0]["scope"] == "turn"
    assert ('rspp_cancels_total{pipeline_version="voice-assistant@1.0.0",reason="provider_error",'
            'scope="turn"} 1.0') in metrics.scrape().decode()


async def test_retries_back_off_within_the_budget(
    wavs: dict[str, Path], fake: tuple[FakeOpenAI, str], tmp_path: Path
) -> None:
    """Two 503s then success: retried with backoff inside the turn budget, turn commits."""
    srv, base = fake
    srv.faults.push(Fault("status", status=503), Fault("status", status=503))
    spec = _spec(tmp_path, {"primary": "openai", "timeout_ms": 10_000, "config": _openai(
        base, retry={"max_retries": 2, "initial_ms": 20, "max_ms": 100})},
        budgets={"turn_ms": 30_000})
    result, sig = await _run(spec, wavs["one"], tmp_path, "b2", real_time=True)
    assert len(srv.requests) == 3
    assert [t.terminal for t in result.turns] == ["commit"]
    assert result.turns[0].reply.startswith("You asked")
    errors = _named(sig, "provider_error")
    assert [e["reason"].split()[3] for e in errors] == ["attempt=1", "attempt=2"]
    assert _named(sig, "budget_exhausted") == []


def test_bad_policy_config_names_the_field(wavs: dict[str, Path], tmp_path: Path) -> None:
    from rspp.runner import RunnerError

    spec = _spec(tmp_path, {"primary": "local", "config": {"circuit": {"windw": 3}}})
    with pytest.raises(RunnerError, match=r"providers\.llm\.config\.circuit: unknown field"
                       r"\(s\) \['windw'\]"):
        asyncio.run(run_local(RunOptions(spec=spec, input=wavs["one"])))


async def test_served_sessions_share_their_factorys_circuit_registry() -> None:
    """``rspp serve``'s session factory is the runtime: every session gets its registry."""
    from rspp.runner import (
        LOCAL_TENANT,
        LocalFactoryOptions,
        LocalSessionFactory,
        compile_spec_file,
    )
    from rspp.transports import ClientAudio, SessionGrant

    factory = LocalSessionFactory(compile_spec_file(VOICE), LocalFactoryOptions(record_level=None))
    handles = [await factory.open(sid, SessionGrant(session_id=sid, tenant_id=LOCAL_TENANT),
                                  ClientAudio()) for sid in ("c1", "c2")]
    try:
        used = [h.core.services.circuits for h in handles]  # type: ignore[attr-defined]
        assert used[0] is factory.circuits and used[1] is factory.circuits
    finally:
        for h in handles:
            await h.close("test_done")
