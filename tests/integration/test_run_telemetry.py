"""A running local session feeds RuntimeMetrics, spans and JSON logs (F-068, F-069, F-070, F-104).

Real offline engines (espeak-ng makes the input, pocketsphinx / local responder /
espeak-ng answer). Spans go to the OpenTelemetry SDK's in-memory exporter; the
metrics are asserted on the scraped Prometheus exposition. The provider-error
case points the OpenAI LLM adapter at a real loopback HTTP server that answers
503 with the OpenAI error body, so the controller retries and falls back.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from rspp.observability import JsonLogFormatter, RuntimeMetrics
from rspp.providers.offline import EspeakTTS
from rspp.runner import RunOptions, RunResult, TelemetryTargets, run_local
from rspp.transports import write_wav

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
PV = "voice-assistant@1.0.0"
NODES = ("vad", "stt", "llm", "segmenter", "tts")


async def _say(text: str, out: Path) -> Path:
    tts = EspeakTTS(sample_rate=16000, voice="en-us", words_per_minute=175)
    pcm = b"".join([chunk.pcm async for chunk in tts.synthesize(text)])
    write_wav(out, pcm, 16000)
    return out


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tele")
    return {
        "question": asyncio.run(_say("what is the weather like today", d / "q.wav")),
        "interrupt": asyncio.run(_say("what is your name", d / "i.wav")),
    }


def samples(text: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    want = set(labels.items())
    hits = [v for (n, lab), v in scraped.items() if n == name and want <= lab]
    return sum(hits) if hits else None


class Rig:
    def __init__(self) -> None:
        self.metrics = RuntimeMetrics()
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.stream = io.StringIO()
        self.logger = logging.getLogger(f"rspp.test.telemetry.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(JsonLogFormatter())
        self.logger.addHandler(handler)
        self.targets = TelemetryTargets(metrics=self.metrics, tracer_provider=provider,
                                        logger=self.logger, sample_interval_s=0.01)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def logs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


async def run_with(rig: Rig, *, input: Path, spec: Path = VOICE, barge_in: Path | None = None,
                   barge_in_after_s: float = 0.0) -> tuple[RunResult, list[float]]:
    """Run while polling the active-sessions gauge from another task."""
    seen: list[float] = []
    opts = RunOptions(spec=spec, input=input, barge_in=barge_in,
                      barge_in_after_s=barge_in_after_s, telemetry=rig.targets)
    task = asyncio.create_task(run_local(opts))
    while not task.done():
        v = value(samples(rig.metrics.scrape()), "rspp_active_sessions", pipeline_version=PV)
        if v is not None:
            seen.append(v)
        await asyncio.sleep(0.005)
    return await task, seen


async def test_session_feeds_node_edge_provider_metrics_and_spans(wavs: dict[str, Path]) -> None:
    rig = Rig()
    result, active = await run_with(rig, input=wavs["question"])
    assert [t.terminal for t in result.turns] == ["commit"]
    assert 1.0 in active  # the gauge is up while the session runs ...
    scraped = samples(rig.metrics.scrape())
    assert value(scraped, "rspp_active_sessions", pipeline_version=PV) == 0.0  # ... and down after
    for node in NODES:
        n = value(scraped, "rspp_node_latency_seconds_count", pipeline_version=PV, node_id=node)
        assert n is not None and n >= 1, node
    # provider label on provider-backed nodes
    assert value(scraped, "rspp_node_latency_seconds_count", node_id="llm", provider="local")
    assert value(scraped, "rspp_node_latency_seconds_count", node_id="tts", provider="espeak")
    # every frame of the input went through vad
    frames = value(scraped, "rspp_node_latency_seconds_count", node_id="vad")
    assert frames is not None and frames >= 50
    edges = {dict(lab)["edge_id"] for (n, lab) in scraped if n == "rspp_edge_queue_depth"}
    assert {"vad.audio->stt.audio", "segmenter.text->tts.text"} <= edges
    assert {dict(lab)["edge_id"] for (n, lab) in scraped if n == "rspp_edge_drops_total"} == edges
    waits = {dict(lab)["edge_id"]: v for (n, lab), v in scraped.items()
             if n == "rspp_edge_latency_seconds_count"}
    assert set(waits) == edges and all(v >= 1 for v in waits.values())
    for modality, provider in (("stt", "pocketsphinx"), ("llm", "local"), ("tts", "espeak")):
        n = value(scraped, "rspp_provider_latency_seconds_count", provider=provider,
                  modality=modality)
        assert n is not None and n >= 1, provider
    assert value(scraped, "rspp_provider_errors_total") is None  # no failure, no error series
    kernel = value(scraped, "rspp_kernel_overhead_seconds_count", pipeline_version=PV)
    assert kernel is not None and kernel >= 1
    assert value(scraped, "rspp_telemetry_errors_total") == 0.0
    assert value(scraped, "rspp_cancel_latency_seconds_count") is None  # nothing was cancelled

    spans = rig.finished()
    names = [s.name for s in spans]
    assert names.count("rspp.session") == 1 and names.count("rspp.turn") == 1
    session = next(s for s in spans if s.name == "rspp.session")
    turn = next(s for s in spans if s.name == "rspp.turn")
    tid = result.turns[0].turn_id
    assert turn.attributes is not None and turn.attributes["rspp.turn_id"] == tid
    assert turn.attributes["rspp.terminal"] == "commit"
    assert turn.parent is not None and turn.parent.span_id == session.context.span_id
    for node in NODES:
        assert f"rspp.node {node}" in names, node
    for s in spans:
        attrs = s.attributes or {}
        assert attrs["rspp.session_id"] == "local-session", s.name
        assert attrs["rspp.pipeline_version"] == PV, s.name
        assert s.context.trace_id == session.context.trace_id, s.name
        if s.name.startswith(("rspp.node", "rspp.provider")):
            assert attrs["rspp.node_id"], s.name
    for node in ("llm", "segmenter", "tts"):
        span = next(s for s in spans if s.name == f"rspp.node {node}")
        assert span.attributes is not None and span.attributes["rspp.turn_id"] == tid
        assert span.parent is not None and span.parent.span_id == turn.context.span_id
    providers = [s for s in spans if s.name.startswith("rspp.provider")]
    assert {s.name for s in providers} == {"rspp.provider pocketsphinx", "rspp.provider local",
                                           "rspp.provider espeak"}
    for s in providers:
        attrs = s.attributes or {}
        assert attrs["rspp.provider_invocation_id"] and attrs["rspp.outcome"] == "success"
        if attrs["rspp.modality"] in ("llm", "tts"):
            assert attrs["rspp.turn_id"] == tid

    logs = rig.logs()
    messages = [ln["message"] for ln in logs]
    assert messages[0] == "session started" and messages[-1] == "session stopped"
    assert {"turn opened", "turn commit", "turn closed"} <= set(messages)
    for ln in logs:
        assert ln["session_id"] == "local-session" and ln["pipeline_version"] == PV
    turn_lines = [ln for ln in logs if str(ln["message"]).startswith(("turn ", "provider local"))]
    assert turn_lines and all(ln["turn_id"] == tid for ln in turn_lines)


async def test_barge_in_observes_cancel_latency_and_aborted_turn_span(
        wavs: dict[str, Path]) -> None:
    rig = Rig()
    result, _ = await run_with(rig, input=wavs["question"], barge_in=wavs["interrupt"],
                               barge_in_after_s=0.4)
    turns = result.turns
    assert [t.terminal for t in turns] == ["abort", "commit"]
    scraped = samples(rig.metrics.scrape())
    assert value(scraped, "rspp_cancel_latency_seconds_count", pipeline_version=PV,
                 scope="turn") == 1.0
    total = value(scraped, "rspp_cancel_latency_seconds_sum", scope="turn")
    fence_ms = turns[0].cancel_fence_ms
    assert total is not None and fence_ms is not None
    assert total == pytest.approx(fence_ms / 1000.0)
    spans = rig.finished()
    turn_spans = {(s.attributes or {})["rspp.turn_id"]: s for s in spans if s.name == "rspp.turn"}
    assert set(turn_spans) == {turns[0].turn_id, turns[1].turn_id}
    aborted = turn_spans[turns[0].turn_id].attributes or {}
    assert aborted["rspp.terminal"] == "abort" and "rspp.cancel_fence_ms" in aborted
    assert "rspp.cancel_fence_ms" not in (turn_spans[turns[1].turn_id].attributes or {})
    messages = {(ln["message"], ln["turn_id"]) for ln in rig.logs()}
    assert ("barge_in", turns[0].turn_id) in messages
    assert ("turn abort", turns[0].turn_id) in messages


class _Overloaded:
    """Loopback HTTP server answering every request 503 with the OpenAI error body."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        self.requests += 1
        body = json.dumps({"error": {"message": "The server is overloaded",
                                     "type": "server_error", "code": None}}).encode()
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def overloaded() -> AsyncIterator[_Overloaded]:
    srv = _Overloaded()
    srv.server = await asyncio.start_server(srv._handle, "127.0.0.1", 0)
    async with srv.server:
        yield srv


async def test_provider_errors_are_labelled_by_provider(
        wavs: dict[str, Path], overloaded: _Overloaded, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPP_TEST_OPENAI_KEY", "sk-test")
    spec = tmp_path / "spec.yaml"
    spec.write_text(VOICE.read_text().replace(
        "llm: {primary: local}",
        "llm: {primary: openai, fallbacks: [local], config: "
        f"{{base_url: 'http://127.0.0.1:{overloaded.port}/v1', api_key: 'env://RSPP_TEST_OPENAI_KEY'}}}}"))
    rig = Rig()
    result, _ = await run_with(rig, spec=spec, input=wavs["question"])
    assert overloaded.requests >= 1
    assert [t.terminal for t in result.turns] == ["commit"]
    scraped = samples(rig.metrics.scrape())
    errors = {(dict(lab)["provider"], dict(lab)["modality"]): v for (n, lab), v in scraped.items()
              if n == "rspp_provider_errors_total"}
    assert set(errors) == {("openai", "llm")}
    assert errors[("openai", "llm")] == overloaded.requests
    assert value(scraped, "rspp_provider_latency_seconds_count", provider="local",
                 modality="llm") == 1.0
    spans = [s for s in rig.finished() if s.name == "rspp.provider openai"]
    assert len(spans) == overloaded.requests
    assert all((s.attributes or {})["rspp.outcome"] != "success" for s in spans)
    warnings = [ln for ln in rig.logs() if ln["level"] == "warning"]
    assert warnings and all(ln["turn_id"] for ln in warnings
                            if str(ln["message"]).startswith("provider openai"))


class _Broken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("log pipeline is down")


async def test_broken_telemetry_never_breaks_the_session(wavs: dict[str, Path]) -> None:
    """A logger that raises on every call: the session still answers; metrics still flow."""
    rig = Rig()
    rig.logger.addFilter(_Broken())
    result, _ = await run_with(rig, input=wavs["question"])
    assert [t.terminal for t in result.turns] == ["commit"]
    assert "weather" in result.turns[0].reply
    assert result.dead_letters == []
    scraped = samples(rig.metrics.scrape())
    n = value(scraped, "rspp_node_latency_seconds_count", node_id="tts")
    assert n is not None and n >= 1
    assert rig.stream.getvalue() == ""  # every log call failed ...
    assert {s.name for s in rig.finished()} >= {"rspp.session", "rspp.turn"}  # ... spans did not


async def test_edge_drops_are_counted_per_edge(wavs: dict[str, Path], tmp_path: Path) -> None:
    """A side consumer slower than real time behind a 4-item drop edge overflows;
    the per-edge counter equals the drop_notice ranges (the consumer is the failure
    matrix's ``SlowTap``: 40 ms of work per 20 ms frame)."""
    edge = "input.audio->tap.audio"
    shutil.copy(REPO / "tests" / "failure_matrix" / "fm_nodes.py", tmp_path / "fm_nodes.py")
    spec = tmp_path / "drop.yaml"
    text = VOICE.read_text()
    for old, new in (
        ("  - id: tts\n", "  - id: tap\n    type: python:fm_nodes:SlowTap\n  - id: tts\n"),
        ("  - {from: vad.audio, to: stt.audio}",
         "  - {from: vad.audio, to: stt.audio}\n"
         "  - {from: input.audio, to: tap.audio, buffer: {strategy: drop, max_queue_items: 4}}"),
    ):
        assert old in text
        text = text.replace(old, new, 1)
    spec.write_text(text)
    rig = Rig()
    timeline = tmp_path / "timeline.jsonl"
    opts = RunOptions(spec=spec, input=wavs["question"], timeline=timeline,
                      telemetry=rig.targets, real_time=True)
    result = await run_local(opts)
    assert [t.terminal for t in result.turns] == ["commit"]
    scraped = samples(rig.metrics.scrape())
    dropped = value(scraped, "rspp_edge_drops_total", pipeline_version=PV, edge_id=edge)
    notices = [json.loads(line)["record"] for line in timeline.read_text().splitlines()]
    ranges = [r["seq_range"] for r in notices
              if r.get("signal") == "drop_notice" and r.get("edge_id") == edge]
    assert ranges and dropped == sum(r["end"] - r["start"] + 1 for r in ranges)
    others = {dict(lab)["edge_id"]: v for (n, lab), v in scraped.items()
              if n == "rspp_edge_drops_total" and dict(lab)["edge_id"] != edge}
    assert others and set(others.values()) == {0.0}
    logged = [ln for ln in rig.logs() if ln["message"] == "events dropped"]
    assert len(logged) == len(ranges) and all(ln["edge_id"] == edge for ln in logged)
