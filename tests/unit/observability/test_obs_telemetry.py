"""Metrics (F-068, F-069, F-104), JSON logs (F-067, NF-008), spans (F-070)."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rspp.observability import (
    CORRELATION_FIELDS,
    JsonLogFormatter,
    NodeTelemetry,
    Redactor,
    RuntimeMetrics,
    SpanFactory,
    log_context,
)

pytestmark = pytest.mark.unit

PV = "assistant@1.0.0"


def test_metrics_scrape_contains_every_series_with_labels() -> None:
    metrics = RuntimeMetrics()
    metrics.node_latency(PV, "stt", 0.120, provider="fake-stt")
    metrics.edge_latency(PV, "stt->llm", 0.004)
    metrics.queue_depth(PV, "stt->llm", 7)
    for _ in range(3):
        metrics.edge_drop(PV, "audio->vad")
    metrics.edge_merge(PV, "llm->tts", 2)
    metrics.cancel_latency(PV, 0.002)
    metrics.provider_latency(PV, "fake-llm", "llm", 0.3)
    metrics.provider_retry(PV, "fake-llm", "llm")
    metrics.provider_error(PV, "fake-llm", "llm", "rate_limited")
    metrics.kernel_overhead(PV, 0.00002)
    metrics.session_started(PV)
    metrics.session_started(PV)
    metrics.session_ended(PV)
    text = metrics.scrape().decode()
    for series in (
        'rspp_node_latency_seconds_bucket{le="0.25",node_id="stt",'
        'pipeline_version="assistant@1.0.0",provider="fake-stt"} 1.0',
        'rspp_edge_latency_seconds_count{edge_id="stt->llm",'
        'pipeline_version="assistant@1.0.0"} 1.0',
        'rspp_edge_queue_depth{edge_id="stt->llm",pipeline_version="assistant@1.0.0"} 7.0',
        'rspp_edge_drops_total{edge_id="audio->vad",pipeline_version="assistant@1.0.0"} 3.0',
        'rspp_edge_merges_total{edge_id="llm->tts",pipeline_version="assistant@1.0.0"} 2.0',
        "rspp_cancel_latency_seconds_count",
        'rspp_provider_latency_seconds_count{modality="llm",node_id="none",'
        'pipeline_version="assistant@1.0.0",provider="fake-llm"} 1.0',
        "rspp_provider_retries_total",
        'outcome="rate_limited"',
        "rspp_kernel_overhead_seconds_count",
        'rspp_active_sessions{pipeline_version="assistant@1.0.0"} 1.0',
    ):
        assert series in text, series
    # drops only on the drop edge, merges only on the merge edge (F-069)
    assert 'rspp_edge_drops_total{edge_id="llm->tts"' not in text
    assert 'rspp_edge_merges_total{edge_id="audio->vad"' not in text
    assert "process_cpu_seconds_total" in text  # autoscaling input (F-104)
    # a second instance has its own registry
    assert "rspp_edge_drops_total{" not in RuntimeMetrics().scrape().decode()


def test_metrics_never_raise_into_the_caller() -> None:
    metrics = RuntimeMetrics()
    metrics.edge_drop(PV, "e1", -1)  # prometheus refuses negative increments
    assert "rspp_telemetry_errors_total 1.0" in metrics.scrape().decode()


def _logger(stream: io.StringIO, redactor: Redactor | None = None) -> logging.Logger:
    logger = logging.getLogger(f"rspp.test.{id(stream)}")
    logger.handlers.clear()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter(redactor))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


async def test_json_logs_carry_correlation_ids_per_task() -> None:
    stream = io.StringIO()
    log = _logger(stream, Redactor())

    async def session(sid: str) -> None:
        with log_context(session_id=sid, pipeline_version=PV):
            log.info("session started")
            with log_context(turn_id=f"{sid}-t1", node_id="llm"):
                await asyncio.sleep(0)
                log.info("node output for %s", "bob@example.com", extra={"edge_id": "llm->tts"})
            log.warning("after turn")

    await asyncio.gather(session("s1"), session("s2"))
    log.error("outside")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 7
    for line in lines:
        assert set(CORRELATION_FIELDS) <= set(line)
    node_lines = [ln for ln in lines if ln["node_id"] == "llm"]
    assert {(ln["session_id"], ln["turn_id"]) for ln in node_lines} == {
        ("s1", "s1-t1"), ("s2", "s2-t1")}
    assert all(ln["edge_id"] == "llm->tts" and ln["pipeline_version"] == PV for ln in node_lines)
    assert all("bob@example.com" not in ln["message"] for ln in lines)
    assert "[REDACTED:email]" in node_lines[0]["message"]
    after = [ln for ln in lines if ln["message"] == "after turn"]
    assert all(ln["turn_id"] is None for ln in after)
    assert lines[-1]["session_id"] is None
    with pytest.raises(ValueError, match="unknown log context field"):
        with log_context(tenant="x"):  # type: ignore[arg-type]
            pass


def test_spans_per_session_turn_node_and_provider() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = SpanFactory(provider)
    with spans.session("s1", PV), spans.turn("s1", "t1", PV):
        with spans.node("s1", "t1", PV, "stt"):
            with spans.provider("s1", "t1", PV, "stt", "fake-stt", "inv-1"):
                pass
        with spans.node("s1", "t1", PV, "llm"):
            pass
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"rspp.session", "rspp.turn", "rspp.node stt", "rspp.node llm",
                             "rspp.provider fake-stt"}
    prov = finished["rspp.provider fake-stt"]
    assert prov.attributes is not None
    assert prov.attributes["rspp.session_id"] == "s1" and prov.attributes["rspp.turn_id"] == "t1"
    assert prov.attributes["rspp.provider_invocation_id"] == "inv-1"
    node_ctx = finished["rspp.node stt"].context
    assert prov.parent is not None and node_ctx is not None
    assert prov.parent.span_id == node_ctx.span_id
    turn, session_ctx = finished["rspp.turn"], finished["rspp.session"].context
    assert turn.parent is not None and session_ctx is not None
    assert turn.parent.span_id == session_ctx.span_id
    assert len({s.context.trace_id for s in finished.values() if s.context}) == 1
    provider.shutdown()


def test_node_telemetry_handle_reports_metrics_and_correlated_debug_logs() -> None:
    from rspp.kernel._handles import TelemetryHandle

    metrics = RuntimeMetrics()
    stream = io.StringIO()
    handle: TelemetryHandle = NodeTelemetry(metrics, _logger(stream), session_id="s9",
                                            pipeline_version=PV, node_id="vad", turn_id="t3")
    handle.metric("speech_prob", 0.9, extra_label="ignored")
    handle.debug("frame classified", frames=3)
    text = metrics.scrape().decode()
    assert 'rspp_node_metric_count{metric="speech_prob",node_id="vad",' in text
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert (line["session_id"], line["turn_id"], line["node_id"], line["frames"]) == (
        "s9", "t3", "vad", 3)


def test_openmetrics_scrape_carries_turn_exemplars_with_bounded_labels() -> None:
    metrics = RuntimeMetrics()
    metrics.node_latency(PV, "llm", 0.2, "local", exemplar={"turn_id": "s1:turn:1",
                                                          "trace_id": "ab" * 16})
    metrics.provider_latency(PV, "local", "llm", 0.3, node_id="llm",
                             exemplar={"turn_id": "s1:turn:2", "trace_id": None})
    metrics.node_latency(PV, "tts", 0.2, "espeak", exemplar={"turn_id": "t" * 200})
    metrics.circuit_transition(PV, "openai", "open")
    metrics.budget_exhausted(PV, exemplar={"turn_id": "s1:turn:2"})
    text = metrics.scrape(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    assert ('rspp_node_latency_seconds_bucket{le="0.25",node_id="llm",pipeline_version='
            f'"{PV}",provider="local"}} 1.0 # {{trace_id="{"ab" * 16}",turn_id="s1:turn:1"}} 0.2'
            ) in text
    assert '# {turn_id="s1:turn:2"} 0.3' in text  # an unknown trace id is left out
    assert 't' * 200 not in text  # over the 128-character exemplar limit: sample kept, no exemplar
    assert 'rspp_node_latency_seconds_count{node_id="tts"' in text
    assert f'rspp_provider_circuit_transitions_total{{pipeline_version="{PV}",provider="openai",' \
           'state="open"} 1.0' in text
    assert 'rspp_budget_exhausted_total{node_id="none"' in text
    assert "rspp_telemetry_errors_total 0.0" in text
    assert "s1:turn" not in metrics.scrape().decode()  # the Prometheus text format has none
