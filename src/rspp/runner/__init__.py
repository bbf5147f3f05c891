"""Local runner (F-125): in-process control plane, loopback session, latency report.

The names are imported on first use (PEP 562): a command that needs one part (``rspp
replay`` needs the demo nodes and :func:`node_session`) does not import the rest (the
live transports, their resampler bindings and web framework).
"""

from __future__ import annotations

import typing

from rspp import _lazy

if typing.TYPE_CHECKING:
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

#: where each public name is defined (imported when first asked for: :func:`rspp._lazy.lazy_names`)
_WHERE = {
    "AssembledSession": "rspp.runner._assembly",
    "AssemblyError": "rspp.runner._assembly",
    "AssemblyOptions": "rspp.runner._assembly",
    "assemble_session": "rspp.runner._assembly",
    "compile_spec_file": "rspp.runner._assembly",
    "LOCAL_RUNTIME_ID": "rspp.runner._bundle",
    "LOCAL_TENANT": "rspp.runner._bundle",
    "local_bundle": "rspp.runner._bundle",
    "LocalFactoryOptions": "rspp.runner._live",
    "LocalSessionFactory": "rspp.runner._live",
    "open_live_session": "rspp.runner._live",
    "node_session": "rspp.runner._node_session",
    "DEMO_NODES": "rspp.runner._replay_demo",
    "DEMO_PROVIDER_TYPES": "rspp.runner._replay_demo",
    "DEMO_SPEC": "rspp.runner._replay_demo",
    "demo_frames": "rspp.runner._replay_demo",
    "demo_registry": "rspp.runner._replay_demo",
    "record_session": "rspp.runner._replay_demo",
    "RunnerError": "rspp.runner._runner",
    "RunOptions": "rspp.runner._runner",
    "RunProgress": "rspp.runner._runner",
    "RunResult": "rspp.runner._runner",
    "TurnReport": "rspp.runner._runner",
    "run_local": "rspp.runner._runner",
    "LATENCY_COLUMNS": "rspp.runner._table",
    "latency_rows": "rspp.runner._table",
    "render_result": "rspp.runner._table",
    "SessionTelemetry": "rspp.runner._telemetry",
    "TelemetryFiles": "rspp.runner._telemetry",
    "TelemetryTargets": "rspp.runner._telemetry",
}


__getattr__, __dir__ = _lazy.lazy_names(__name__, _WHERE, globals())

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
