"""Live sessions on the ``rspp run`` assembly: the local :class:`SessionFactory`.

:func:`open_live_session` builds one session with :func:`assemble_session`
around a :class:`~rspp.transports.LiveTransport` and starts it; every served
factory uses it (the control-plane governed one of ``rspp serve`` passes its
snapshot source and lease epoch through :class:`AssemblyOptions`).
:class:`LocalSessionFactory` serves one compiled spec with the in-process
bundle (``rspp serve`` embedded default, tests, benchmarks); each session's
timeline goes to ``timeline_dir/<session_id>.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rspp.contracts import RecordingLevel
from rspp.providers import CircuitRegistry
from rspp.runner._assembly import AssemblyError, AssemblyOptions, assemble_session
from rspp.runner._telemetry import TelemetryTargets
from rspp.spec import GraphDefinition
from rspp.transports import (
    ClientAudio,
    LiveOptions,
    LiveSessionHandle,
    LiveTransport,
    SessionGrant,
    SessionRefused,
)

__all__ = ["LocalFactoryOptions", "LocalSessionFactory", "open_live_session"]

#: the rate ingress is re-chunked to (the built-in VAD/STT work at 16 kHz)
PIPELINE_RATE = 16000


async def open_live_session(gd: GraphDefinition, opts: AssemblyOptions, *,
                            live: LiveOptions | None = None,
                            sample_rate: int = PIPELINE_RATE) -> LiveSessionHandle:
    """Assemble and start one live session of ``gd``; raises SessionRefused.

    A live transport carries speech and typed text: a spec with only an ``input.text``
    entry (a text chat) is served too. The spec's ``transport.commit_ms`` (F-039) sets
    the transport's commit point.
    """
    opts = replace(opts, inputs=LiveTransport.INPUTS)
    # the spec's commit point (F-039) is the pipeline's, whatever runtime serves it
    live = replace(live or LiveOptions(), commit_ms=gd.commit_ms)
    try:
        assembled = assemble_session(
            gd, opts, lambda record: LiveTransport(sample_rate, live, record=record,
                                                   jitter=gd.jitter))
    except AssemblyError as exc:
        raise SessionRefused(str(exc)) from None
    handle = LiveSessionHandle(assembled, assembled.transport, tenant_id=opts.tenant_id)
    await assembled.start()
    return handle


@dataclass(frozen=True, slots=True)
class LocalFactoryOptions:
    #: set: each session records what ``rspp replay`` needs at this level
    record_level: RecordingLevel | None = RecordingLevel.L2
    #: set: each session's timeline is ``<dir>/<session_id>.jsonl``
    timeline_dir: Path | None = None
    live: LiveOptions = field(default_factory=LiveOptions)
    telemetry: TelemetryTargets | None = None
    #: wall-clock turn budgets end turns (live sessions run in real time); False: reported only
    enforce_budgets: bool = True


class LocalSessionFactory:
    """Opens live sessions of one spec with the in-process control plane of ``rspp run``.

    The factory is the runtime of its sessions: it owns one :class:`CircuitRegistry`
    (F-057) and hands it to every session it opens.
    """

    def __init__(self, gd: GraphDefinition, options: LocalFactoryOptions | None = None,
                 *, circuits: CircuitRegistry | None = None) -> None:
        self.gd = gd
        self.options = options or LocalFactoryOptions()
        self.circuits = circuits or CircuitRegistry()
        self.opened: list[str] = []

    def timeline_for(self, session_id: str) -> Path | None:
        d = self.options.timeline_dir
        return None if d is None else d / f"{session_id}.jsonl"

    async def open(self, session_id: str, grant: SessionGrant,
                   audio: ClientAudio) -> LiveSessionHandle:
        o = self.options
        opts = AssemblyOptions(session_id=session_id, tenant_id=grant.tenant_id,
                               authority_epoch=grant.lease_epoch, record_level=o.record_level,
                               timeline=self.timeline_for(session_id), telemetry=o.telemetry,
                               enforce_budgets=o.enforce_budgets, circuits=self.circuits)
        handle = await open_live_session(self.gd, opts, live=o.live)
        self.opened.append(session_id)
        return handle
