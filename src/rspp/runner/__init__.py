"""Local runner (F-125): in-process control plane, loopback session, latency report."""

from rspp.runner._assembly import (
    AssembledSession,
    AssemblyError,
    AssemblyOptions,
    assemble_session,
    compile_spec_file,
)
from rspp.runner._bundle import LOCAL_RUNTIME_ID, LOCAL_TENANT, local_bundle
from rspp.runner._live import LocalFactoryOptions, LocalSessionFactory, open_live_session
from rspp.runner._node_session import node_session
from rspp.runner._replay_demo import (
    DEMO_NODES,
    DEMO_PROVIDER_TYPES,
    DEMO_SPEC,
    demo_frames,
    demo_registry,
    record_session,
)
from rspp.runner._runner import (
    RunnerError,
    RunOptions,
    RunProgress,
    RunResult,
    TurnReport,
    run_local,
)
from rspp.runner._table import LATENCY_COLUMNS, latency_rows, render_result
from rspp.runner._telemetry import SessionTelemetry, TelemetryFiles, TelemetryTargets

__all__ = [
    "DEMO_NODES",
    "DEMO_PROVIDER_TYPES",
    "DEMO_SPEC",
    "LATENCY_COLUMNS",
    "LOCAL_RUNTIME_ID",
    "LOCAL_TENANT",
    "AssembledSession",
    "AssemblyError",
    "AssemblyOptions",
    "LocalFactoryOptions",
    "LocalSessionFactory",
    "RunOptions",
    "RunProgress",
    "RunResult",
    "RunnerError",
    "SessionTelemetry",
    "TelemetryFiles",
    "TelemetryTargets",
    "TurnReport",
    "assemble_session",
    "compile_spec_file",
    "demo_frames",
    "demo_registry",
    "latency_rows",
    "local_bundle",
    "node_session",
    "open_live_session",
    "record_session",
    "render_result",
    "run_local",
]
