"""Session assembly shared by ``rspp run`` and ``rspp serve`` (one builder, two front doors).

:func:`assemble_session` wires one live session from a compiled graph: the
timeline recorder (and its asynchronous JSON Lines exporter), node services
with the spec's providers, local admission, the authority guard at the lease
epoch, the plan resolver over a snapshot source (the in-process bundle for
``rspp run``, the control plane for ``rspp serve``), the session actor, the
turn driver, optional telemetry, and the transport the caller builds from the
record sink. :class:`LiveSession` starts it, follows lease changes
(:meth:`LiveSession.authority_changed`: rotation or loss, T8/T4/T12) and
finishes it in the one order that flushes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

import rspp.nodes  # noqa: F401  (registers the built-in node types)
from rspp.contracts import ControlSignal, Emitter, RecordingLevel, SignalName
from rspp.errors import RSPPError
from rspp.nodes import NodeServices, bind_services, build_provider, unbind_services
from rspp.observability import (
    JsonLinesFileSink,
    RecorderOptions,
    Redactor,
    TimelineExporter,
    TimelineRecorder,
)
from rspp.runner._replayable import ReplayableCapture
from rspp.runner._telemetry import SessionTelemetry, TelemetryFiles, TelemetryTargets
from rspp.runtime import RuntimeGraph, SessionActor, SessionOptions, SystemClock, Timebase
from rspp.runtime._admission import LocalAdmission
from rspp.runtime._authority import AuthorityGuard
from rspp.runtime._plan_resolver import PlanResolver
from rspp.runtime._snapshot_source import SnapshotSource
from rspp.runtime._turn_driver import TurnDriver
from rspp.spec import GraphDefinition
from rspp.transports import PlaybackObserver

__all__ = ["AssemblyError", "LiveSession", "SessionConfig", "SessionTransport",
           "assemble_session"]

_DEFAULT_LEVEL = RecordingLevel.L2  # the recorder's ceiling; each turn's plan sets its level



class RecordSink(Protocol):
    """The session's one record sink: timeline recorder, telemetry, listeners."""

    def __call__(self, rec: msgspec.Struct, payload: object = None) -> None: ...

SignalFactory = Callable[[SignalName, Emitter, str, str], ControlSignal]


class AssemblyError(RSPPError):
    """The session cannot be assembled (providers, graph, admission); says how to fix it."""


class SessionTransport(Protocol):
    """What the assembly needs from a transport (loopback, WebSocket, ...)."""

    def output(self, port: str, event: Any) -> None: ...

    def stop_playback(self, turn_id: str) -> None: ...

    def attach(self, session: SessionActor, driver: PlaybackObserver,
               make_signal: SignalFactory | None = None) -> None: ...


T = TypeVar("T", bound=SessionTransport)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Everything one session needs besides its transport (grouped options)."""

    graph: GraphDefinition
    session_id: str
    tenant_id: str
    runtime_id: str
    source: SnapshotSource
    authority_epoch: int = 1
    #: wall-clock budgets are enforced in real time; reported only otherwise
    real_time: bool = True
    #: recording level (None: the plan's); set, also records what ``rspp replay`` needs
    record_level: RecordingLevel | None = None
    timeline: Path | None = None
    telemetry: TelemetryTargets | None = None
    metrics_out: Path | None = None
    trace_out: Path | None = None
    log_out: Path | None = None
    #: turn-start admission policy of the local admission (None: permissive defaults)
    admission_policy: Any = None


def _services(gd: GraphDefinition, session_id: str, sink: Any) -> NodeServices:
    providers: dict[str, Any] = {}
    chains: dict[str, tuple[str, ...]] = {}
    timeouts: dict[str, int] = {}
    for b in gd.providers:
        chain = (b.primary, *b.fallbacks)
        chains[b.modality] = chain
        timeouts[b.modality] = max(int(b.timeout.value), 1000)
        for i, pid in enumerate(chain):
            if pid in providers:
                continue
            cfg = dict(b.config.items()) if i == 0 and hasattr(b.config, "items") else {}
            try:
                providers[pid] = build_provider(pid, cfg)
            except KeyError as exc:
                raise AssemblyError(f"providers.{b.modality}: {exc.args[0]}") from None
    return NodeServices(providers=providers, chains=chains, session_id=session_id,
                        pipeline_version=f"{gd.name}@{gd.version}", signal_sink=sink,
                        timeouts_ms=timeouts)


@dataclass(slots=True)
class LiveSession(Generic[T]):
    """One assembled session: start, run its transport, follow its lease, finish."""

    config: SessionConfig
    session: SessionActor
    driver: TurnDriver
    transport: T
    services: NodeServices
    authority: AuthorityGuard
    recorder: TimelineRecorder
    admission: LocalAdmission
    dead_letters: list[str]
    _exporter: asyncio.Task[None] | None = None
    _tele: SessionTelemetry | None = None
    _files: TelemetryFiles | None = None
    _sampler: asyncio.Task[None] | None = None
    _started: bool = False
    _finished: bool = False
    listeners: list[Callable[[msgspec.Struct], None]] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        return self.config.session_id

    async def start(self) -> None:
        if self._tele is not None:
            self._tele.started()
            self._sampler = asyncio.create_task(self._tele.run(), name="telemetry-sampler")
        await self.session.start()
        self._started = True

    def authority_changed(self, new_epoch: int | None, reason: str) -> None:
        """The lease rotated to ``new_epoch`` (same holder) or was lost (``None``).

        Goes through the session's control lane, so the turn driver applies it at a
        scheduling point: an Active turn is fenced and ends ``deauthorized_drain``,
        ``abort(authority_loss)``, ``close`` (T8); an Opening one drains pre-open (T4);
        later turns open at the new epoch (or, revoked, are refused).
        """
        self.driver.authority_changed(new_epoch, reason)

    async def finish(self) -> None:
        """Drain, end the session (an Active turn aborts ``session_end``), flush, release."""
        if self._finished:
            return
        self._finished = True
        try:
            try:
                if self._started:
                    await self.session.drain()
                    self.driver.end_session()
                    await self.session.drain()
            finally:
                await self.session.stop()
                await self.driver.aclose()
                for p in self.services.providers.values():
                    with contextlib.suppress(Exception):
                        await p.aclose()
        finally:
            unbind_services(self.config.session_id)
            self.admission.end_session(self.config.tenant_id, self.config.session_id)
            self.recorder.close()
            if self._exporter is not None:
                await self._exporter
            if self._tele is not None and self._files is not None:
                if self._sampler is not None:
                    self._sampler.cancel()
                    await asyncio.wait({self._sampler})
                self._tele.stopped()
                self._files.close()


async def assemble_session(cfg: SessionConfig,
                           make_transport: Callable[[RecordSink], T]) -> LiveSession[T]:
    """Build (not start) one session of ``cfg.graph`` with the transport ``make_transport``
    returns for the session's record sink. Raise :class:`AssemblyError` on bad input."""
    gd = cfg.graph
    graph = RuntimeGraph.from_definition(gd)
    if "audio" not in graph.entry_ports():
        raise AssemblyError(f"pipeline {gd.name}@{gd.version}: the graph has no `input.audio` "
                            "entry; add an edge `{from: input.audio, to: <vad>.audio}`")
    clock = SystemClock()
    # One time base for the whole session: records of the kernel, transport,
    # providers and recorder all carry milliseconds since the session started.
    timebase = Timebase(clock)
    recorder = TimelineRecorder(timebase, RecorderOptions(capacity=200_000, control_reserve=100_000,
                                                       evidence_reserve=4096,
                                                       level=cfg.record_level or _DEFAULT_LEVEL))
    exporter_task: asyncio.Task[None] | None = None
    if cfg.timeline is not None:
        cfg.timeline.parent.mkdir(parents=True, exist_ok=True)
        cfg.timeline.write_bytes(b"")
        exporter = TimelineExporter(recorder, JsonLinesFileSink(cfg.timeline), timebase,
                                    redactor=Redactor())  # PII never reaches the file (NF-014)
        exporter_task = asyncio.create_task(exporter.run(), name="timeline-exporter")
    # kernel-overhead timing (instrument) only when someone consumes it (F-104)
    want_tele = cfg.telemetry is not None or any(
        p is not None for p in (cfg.metrics_out, cfg.trace_out, cfg.log_out))
    holder: dict[str, Any] = {}

    def record(rec: msgspec.Struct, payload: object = None) -> None:
        recorder.append(rec, payload)
        tele = holder.get("tele")
        if tele is not None:
            tele.on_record(rec, payload)
        for listen in holder.get("listeners", ()):
            listen(rec)

    try:
        return _wire(cfg, graph, clock, timebase, recorder, exporter_task, record, holder,
                     want_tele, make_transport)
    except BaseException:
        unbind_services(cfg.session_id)
        recorder.close()
        if exporter_task is not None:
            await exporter_task
        raise


def _wire(cfg: SessionConfig, graph: RuntimeGraph, clock: SystemClock, timebase: Timebase,
          recorder: TimelineRecorder, exporter_task: asyncio.Task[None] | None,
          record: RecordSink, holder: dict[str, Any], want_tele: bool,
          make_transport: Callable[[RecordSink], T]) -> LiveSession[T]:
    gd, sid = cfg.graph, cfg.session_id
    services = _services(gd, sid, record)
    capture = ReplayableCapture(record) if cfg.record_level is not None else None
    admission = LocalAdmission(clock)
    if cfg.admission_policy is not None:
        admission.set_policy(cfg.admission_policy)
    if not admission.admit_session(cfg.tenant_id, sid).admitted:
        raise AssemblyError(f"session {sid} was not admitted by the local admission policy")
    authority = AuthorityGuard(cfg.authority_epoch)
    resolver = PlanResolver(gd, cfg.source, clock, runtime_id=cfg.runtime_id)
    transport = make_transport(record)
    dead: list[str] = []

    def dead_letter(dl: Any) -> None:
        dead.append(f"{dl.error.node_id}:{dl.error.error_code}:{dl.error.message}")
        if "driver" in holder:
            holder["driver"].node_failed(dl)

    bind_services(sid, services)
    session = SessionActor(graph, session_id=sid, clock=clock,
                           options=SessionOptions(seed=0, instrument=want_tele),
                           registry=capture.registry if capture is not None else None,
                           output_sink=transport.output, signal_sink=record,
                           dead_letter_sink=dead_letter, timebase=timebase)
    session.signals.authority_epoch = authority.epoch
    if capture is not None:
        capture.bind(session)
    reply_ports = tuple(p for p in graph.exit_ports() if not p.startswith("transcript"))

    def on_plan(plan: Any) -> None:
        for modality, pid in plan.provider_bindings.items():
            rest = tuple(p for p in services.chains.get(modality, ()) if p != pid)
            services.chains[modality] = (pid, *rest)

    driver = TurnDriver(session, resolver, tenant_id=cfg.tenant_id, authority=authority,
                        admission=admission, record=record, evidence=recorder.append_evidence,
                        on_plan=on_plan, reply_ports=reply_ports or ("audio",),
                        invocations=services.invocation_outcomes,
                        enforce_budgets=cfg.real_time)
    holder["driver"] = driver
    services.hooks = driver
    services.next_sequence = session._next_seq
    services.clock = timebase
    services.authority_epoch = authority.epoch
    driver.on_stop_playback = transport.stop_playback
    driver.on_epoch = lambda epoch: setattr(services, "authority_epoch", epoch)

    def make_signal(name: Any, emitter: Any, turn_id: str, reason: str) -> Any:
        return driver.stamp.signal(name, emitter, authority_epoch=authority.epoch,
                                   turn_id=turn_id, reason=reason)

    transport.attach(session, driver, make_signal)
    live: LiveSession[T] = LiveSession(
        config=cfg, session=session, driver=driver, transport=transport, services=services,
        authority=authority, recorder=recorder, admission=admission, dead_letters=dead,
        _exporter=exporter_task)
    holder["listeners"] = live.listeners
    if want_tele:
        files = TelemetryFiles(metrics_out=cfg.metrics_out, trace_out=cfg.trace_out,
                               log_out=cfg.log_out, targets=cfg.telemetry)
        tele = SessionTelemetry(files.targets, session_id=sid,
                                pipeline_version=graph.pipeline_version)
        tele.attach(
            session,
            cancel_ms=lambda tid: t.cancel_fence_ms if (t := driver.timings.get(tid)) else None,
            node_providers={nid: services.chains[h.decl.type][0] for nid, h in
                            session.hosts.items() if services.chains.get(h.decl.type)})
        services.on_controller = tele.on_controller
        holder["tele"] = tele
        live._tele, live._files = tele, files
    return live
