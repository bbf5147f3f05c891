"""Observability: timeline recorder (OR-02), exporters, comparator, SLO gates, telemetry.

The replay engine (OR-03) that re-runs a recorded timeline lives in :mod:`rspp.replay`,
one layer up: it uses the comparator (:func:`compare_timelines`) and the recorder here.
"""

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
