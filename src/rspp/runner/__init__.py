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
from rspp.runner._runner import RunnerError, RunOptions, RunResult, TurnReport, run_local
from rspp.runner._table import latency_rows, render_result
from rspp.runner._telemetry import SessionTelemetry, TelemetryFiles, TelemetryTargets

__all__ = [
    "LOCAL_RUNTIME_ID",
    "LOCAL_TENANT",
    "AssembledSession",
    "AssemblyError",
    "AssemblyOptions",
    "LocalFactoryOptions",
    "LocalSessionFactory",
    "RunOptions",
    "RunResult",
    "RunnerError",
    "SessionTelemetry",
    "TelemetryFiles",
    "TelemetryTargets",
    "TurnReport",
    "assemble_session",
    "compile_spec_file",
    "latency_rows",
    "local_bundle",
    "open_live_session",
    "render_result",
    "run_local",
]
