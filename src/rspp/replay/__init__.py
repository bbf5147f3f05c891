"""Replay (OR-03): re-run a recorded session and compare it with its recording.

:class:`ReplayEngine` / :func:`replay` re-run a recorded session (re-simulation or
recorded-provider playback, replayed or recomputed decisions) and compare it with
:func:`rspp.observability.compare_timelines`; :class:`ReplayCursor` steps, pauses and
resumes; :class:`SessionRig` records a kernel session for replay. Replay sits above
the kernel, the turn machinery and observability and knows no node implementation:
the caller (runner, CLI) injects the node registry and the session factory that gives
the nodes their services.
"""

from rspp.replay._cursor import ReplayCursor
from rspp.replay._engine import (
    RecordedAdmission,
    ReplayEngine,
    ReplayOptions,
    ReplayResult,
    replay,
)
from rspp.replay._errors import ReplayError, ReplayInputError
from rspp.replay._report import replay_report_json, replay_summary_text
from rspp.replay._rig import DEFAULT_PROVIDER_NODE_TYPES, RigOptions, SessionRig
from rspp.replay._session_factory import (
    DriverHooks,
    RigSession,
    SessionFactory,
    kernel_session,
)
from rspp.replay._source import Recording, SessionSpan, load_recording, timeline_sessions

__all__ = [
    "DEFAULT_PROVIDER_NODE_TYPES",
    "DriverHooks",
    "RecordedAdmission",
    "Recording",
    "ReplayCursor",
    "ReplayEngine",
    "ReplayError",
    "ReplayInputError",
    "ReplayOptions",
    "ReplayResult",
    "RigOptions",
    "RigSession",
    "SessionFactory",
    "SessionRig",
    "SessionSpan",
    "kernel_session",
    "load_recording",
    "replay",
    "replay_report_json",
    "replay_summary_text",
    "timeline_sessions",
]
