"""Observability: timeline recorder (OR-02), exporters, comparator, SLO gates, telemetry.

The replay engine (OR-03) that re-runs a recorded timeline lives in :mod:`rspp.replay`,
one layer up: it uses the comparator (:func:`compare_timelines`) and the recorder here.

The names are imported on first use (PEP 562): a reader of timelines (``rspp replay``)
does not import the exporters' and metrics' libraries (Prometheus, OpenTelemetry, rich)
it never uses.
"""

from __future__ import annotations

import typing

from rspp import _lazy

if typing.TYPE_CHECKING:
    from rspp.observability._builder import TimelineBuilder, build_plan
    from rspp.observability._compare import TurnwiseComparison, compare_timelines, compare_view
    from rspp.observability._errors import (
        ObservabilityError,
        TimelineFormatError,
    )
    from rspp.observability._evidence import (
        EVIDENCE_KIND,
        OR02_EVIDENCE_SCHEMA_VERSION,
        REQUIRED_EVIDENCE_FIELDS,
        CancelMarkers,
        OR02Evidence,
        ProviderInvocationOutcome,
        missing_evidence_fields,
    )
    from rspp.observability._exporter import (
        ExporterOptions,
        ExporterStats,
        TimelineExporter,
        to_line,
    )
    from rspp.observability._handle import NodeTelemetry
    from rspp.observability._http_sink import ExportRefused, HttpExportSink
    from rspp.observability._levels import LevelLadder, level_allows
    from rspp.observability._log_limit import LogLimit, LogVerdict, held_summary
    from rspp.observability._logging import (
        CORRELATION_FIELDS,
        JsonLogFormatter,
        current_log_context,
        log_context,
    )
    from rspp.observability._metrics import OPENMETRICS_CONTENT_TYPE, RuntimeMetrics
    from rspp.observability._recorder import (
        BufferedItem,
        RecorderOptions,
        RecorderStats,
        TimelineRecorder,
        payload_tier,
    )
    from rspp.observability._redaction import (
        DEFAULT_PII_RULES,
        RedactionAudit,
        RedactionConfig,
        RedactionRule,
        Redactor,
        SecretValues,
        parse_rule,
    )
    from rspp.observability._report import report_to_json, report_to_markdown
    from rspp.observability._retention import RetentionPolicy, SweepResult, sweep
    from rspp.observability._sampling import DebugCapture, DebugCaptureSlots, SamplingPolicy
    from rspp.observability._session_slo import SessionBounds, SessionVerdict, evaluate_sessions
    from rspp.observability._sinks import (
        JsonLinesFileSink,
        LocalAppendSink,
        MsgpackFileSink,
        TimelineSink,
    )
    from rspp.observability._slo import (
        GATES,
        THRESHOLD_FIELDS,
        GateAccumulator,
        GateDef,
        GateReport,
        GateResult,
        TurnGateSample,
        evaluate_gates,
        gate_report,
        gates_with,
        percentile,
    )
    from rspp.observability._timeline_io import (
        INT_FIELDS,
        MAX_LINE_BYTES,
        TimelineLine,
        as_line,
        as_lines,
        envelope_problem,
        iter_timeline,
        iter_values,
        read_timeline,
    )
    from rspp.observability._tracing import SpanFactory
    from rspp.observability._turn_latency import TurnLatency, turn_latencies
    from rspp.observability._turn_view import LiveTurnView, TurnMark, TurnRow, turn_rows
    from rspp.observability._view import (
        TimelineFilter,
        filter_lines,
        timeline_table,
        timeline_text,
    )

#: where each public name is defined (imported when first asked for: :func:`rspp._lazy.lazy_names`)
_WHERE = {
    "TimelineBuilder": "rspp.observability._builder",
    "build_plan": "rspp.observability._builder",
    "TurnwiseComparison": "rspp.observability._compare",
    "compare_timelines": "rspp.observability._compare",
    "compare_view": "rspp.observability._compare",
    "ObservabilityError": "rspp.observability._errors",
    "TimelineFormatError": "rspp.observability._errors",
    "EVIDENCE_KIND": "rspp.observability._evidence",
    "OR02_EVIDENCE_SCHEMA_VERSION": "rspp.observability._evidence",
    "REQUIRED_EVIDENCE_FIELDS": "rspp.observability._evidence",
    "CancelMarkers": "rspp.observability._evidence",
    "OR02Evidence": "rspp.observability._evidence",
    "ProviderInvocationOutcome": "rspp.observability._evidence",
    "missing_evidence_fields": "rspp.observability._evidence",
    "ExporterOptions": "rspp.observability._exporter",
    "ExporterStats": "rspp.observability._exporter",
    "TimelineExporter": "rspp.observability._exporter",
    "to_line": "rspp.observability._exporter",
    "NodeTelemetry": "rspp.observability._handle",
    "ExportRefused": "rspp.observability._http_sink",
    "HttpExportSink": "rspp.observability._http_sink",
    "LevelLadder": "rspp.observability._levels",
    "level_allows": "rspp.observability._levels",
    "LogLimit": "rspp.observability._log_limit",
    "LogVerdict": "rspp.observability._log_limit",
    "held_summary": "rspp.observability._log_limit",
    "CORRELATION_FIELDS": "rspp.observability._logging",
    "JsonLogFormatter": "rspp.observability._logging",
    "current_log_context": "rspp.observability._logging",
    "log_context": "rspp.observability._logging",
    "OPENMETRICS_CONTENT_TYPE": "rspp.observability._metrics",
    "RuntimeMetrics": "rspp.observability._metrics",
    "BufferedItem": "rspp.observability._recorder",
    "RecorderOptions": "rspp.observability._recorder",
    "RecorderStats": "rspp.observability._recorder",
    "TimelineRecorder": "rspp.observability._recorder",
    "payload_tier": "rspp.observability._recorder",
    "DEFAULT_PII_RULES": "rspp.observability._redaction",
    "RedactionAudit": "rspp.observability._redaction",
    "RedactionConfig": "rspp.observability._redaction",
    "RedactionRule": "rspp.observability._redaction",
    "Redactor": "rspp.observability._redaction",
    "SecretValues": "rspp.observability._redaction",
    "parse_rule": "rspp.observability._redaction",
    "report_to_json": "rspp.observability._report",
    "report_to_markdown": "rspp.observability._report",
    "RetentionPolicy": "rspp.observability._retention",
    "SweepResult": "rspp.observability._retention",
    "sweep": "rspp.observability._retention",
    "DebugCapture": "rspp.observability._sampling",
    "DebugCaptureSlots": "rspp.observability._sampling",
    "SamplingPolicy": "rspp.observability._sampling",
    "SessionBounds": "rspp.observability._session_slo",
    "SessionVerdict": "rspp.observability._session_slo",
    "evaluate_sessions": "rspp.observability._session_slo",
    "JsonLinesFileSink": "rspp.observability._sinks",
    "LocalAppendSink": "rspp.observability._sinks",
    "MsgpackFileSink": "rspp.observability._sinks",
    "TimelineSink": "rspp.observability._sinks",
    "GATES": "rspp.observability._slo",
    "THRESHOLD_FIELDS": "rspp.observability._slo",
    "GateAccumulator": "rspp.observability._slo",
    "GateDef": "rspp.observability._slo",
    "GateReport": "rspp.observability._slo",
    "GateResult": "rspp.observability._slo",
    "TurnGateSample": "rspp.observability._slo",
    "evaluate_gates": "rspp.observability._slo",
    "gate_report": "rspp.observability._slo",
    "gates_with": "rspp.observability._slo",
    "percentile": "rspp.observability._slo",
    "INT_FIELDS": "rspp.observability._timeline_io",
    "MAX_LINE_BYTES": "rspp.observability._timeline_io",
    "TimelineLine": "rspp.observability._timeline_io",
    "as_line": "rspp.observability._timeline_io",
    "as_lines": "rspp.observability._timeline_io",
    "envelope_problem": "rspp.observability._timeline_io",
    "iter_timeline": "rspp.observability._timeline_io",
    "iter_values": "rspp.observability._timeline_io",
    "read_timeline": "rspp.observability._timeline_io",
    "SpanFactory": "rspp.observability._tracing",
    "TurnLatency": "rspp.observability._turn_latency",
    "turn_latencies": "rspp.observability._turn_latency",
    "LiveTurnView": "rspp.observability._turn_view",
    "TurnMark": "rspp.observability._turn_view",
    "TurnRow": "rspp.observability._turn_view",
    "turn_rows": "rspp.observability._turn_view",
    "TimelineFilter": "rspp.observability._view",
    "filter_lines": "rspp.observability._view",
    "timeline_table": "rspp.observability._view",
    "timeline_text": "rspp.observability._view",
}


__getattr__, __dir__ = _lazy.lazy_names(__name__, _WHERE, globals())

__all__ = [
    "CORRELATION_FIELDS",
    "DEFAULT_PII_RULES",
    "EVIDENCE_KIND",
    "GATES",
    "INT_FIELDS",
    "MAX_LINE_BYTES",
    "OPENMETRICS_CONTENT_TYPE",
    "OR02_EVIDENCE_SCHEMA_VERSION",
    "REQUIRED_EVIDENCE_FIELDS",
    "THRESHOLD_FIELDS",
    "BufferedItem",
    "CancelMarkers",
    "DebugCapture",
    "DebugCaptureSlots",
    "ExportRefused",
    "ExporterOptions",
    "ExporterStats",
    "GateAccumulator",
    "GateDef",
    "GateReport",
    "GateResult",
    "HttpExportSink",
    "JsonLinesFileSink",
    "JsonLogFormatter",
    "LevelLadder",
    "LiveTurnView",
    "LocalAppendSink",
    "LogLimit",
    "LogVerdict",
    "MsgpackFileSink",
    "NodeTelemetry",
    "OR02Evidence",
    "ObservabilityError",
    "ProviderInvocationOutcome",
    "RecorderOptions",
    "RecorderStats",
    "RedactionAudit",
    "RedactionConfig",
    "RedactionRule",
    "Redactor",
    "RetentionPolicy",
    "RuntimeMetrics",
    "SamplingPolicy",
    "SecretValues",
    "SessionBounds",
    "SessionVerdict",
    "SpanFactory",
    "SweepResult",
    "TimelineBuilder",
    "TimelineExporter",
    "TimelineFilter",
    "TimelineFormatError",
    "TimelineLine",
    "TimelineRecorder",
    "TimelineSink",
    "TurnGateSample",
    "TurnLatency",
    "TurnMark",
    "TurnRow",
    "TurnwiseComparison",
    "as_line",
    "as_lines",
    "build_plan",
    "compare_timelines",
    "compare_view",
    "current_log_context",
    "envelope_problem",
    "evaluate_gates",
    "evaluate_sessions",
    "filter_lines",
    "gate_report",
    "gates_with",
    "held_summary",
    "iter_timeline",
    "iter_values",
    "level_allows",
    "log_context",
    "missing_evidence_fields",
    "parse_rule",
    "payload_tier",
    "percentile",
    "read_timeline",
    "report_to_json",
    "report_to_markdown",
    "sweep",
    "timeline_table",
    "timeline_text",
    "to_line",
    "turn_latencies",
    "turn_rows",
]
