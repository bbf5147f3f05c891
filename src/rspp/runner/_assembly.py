"""Session assembly: one compiled graph + one transport -> a running RSPP session.

:func:`assemble_session` builds what every session needs, whatever carries its
media: the timeline recorder (and its asynchronous JSON Lines exporter), the
node services and providers, admission, the authority guard, the plan
resolver, the :class:`~rspp.kernel.SessionActor` with the built-in nodes, the
turn driver, the replay capture (``record_level``) and the telemetry feed.
``rspp run`` assembles it around the loopback (WAV) transport; the served
session factories (``rspp serve``) around a live network transport. The
transport is created by ``make_transport(record)`` so that it records its
crossing frames into the same timeline, and is attached to the session and
driver before the session starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

import rspp.nodes  # noqa: F401  (registers the built-in node types)
from rspp.contracts import (
    AdmissionPolicy,
    ControlSignal,
    Emitter,
    EventRecord,
    Lane,
    RecordingLevel,
    SignalName,
)
from rspp.errors import RSPPError
from rspp.kernel import (
    DEFAULT_MAX_SKEW_MS,
    EventKind,
    ExecutionPool,
    RuntimeGraph,
    SessionActor,
    SessionOptions,
    SkewEvent,
    SystemClock,
    Timebase,
)
from rspp.nodes import NodeCatalog, NodeServices, build_provider
from rspp.observability import (
    DebugCaptureSlots,
    JsonLinesFileSink,
    RecorderOptions,
    RedactionConfig,
    Redactor,
    SamplingPolicy,
    TimelineExporter,
    TimelineRecorder,
    TimelineSink,
)
from rspp.providers import (
    POLICY_CONFIG_KEYS,
    PROVIDER_CATALOG,
    CircuitRegistry,
    CostMeter,
    HttpClientPool,
    InvocationPolicy,
    PolicyError,
    PriceTable,
    ProviderBatcher,
    SecretConfigError,
    SecretRef,
    UsageKind,
    UsageSummary,
    cost_caps_from_config,
    default_redactor,
    policy_from_config,
)
from rspp.runner._bundle import LOCAL_RUNTIME_ID, LOCAL_TENANT, local_bundle
from rspp.runner._capabilities import SessionCapabilities
from rspp.runner._replayable import ReplayableCapture
from rspp.runner._telemetry import SessionTelemetry, TelemetryFiles, TelemetryTargets
from rspp.spec import (
    ConfigLayers,
    EffectiveSpec,
    GraphDefinition,
    SpecInvalid,
    compile_spec,
    load_layers,
    load_spec,
    resolve_effective,
)
from rspp.transports import InputRejected
from rspp.turns._admission import LocalAdmission
from rspp.turns._authority import AuthorityGuard
from rspp.turns._capacity import priority_of, turn_end_listener
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._snapshot_source import SnapshotSource, StaticSnapshotSource
from rspp.turns._state import StateManager
from rspp.turns._turn_driver import TurnDriver

__all__ = [
    "AssembledSession",
    "AssemblyError",
    "AssemblyOptions",
    "SessionTransport",
    "assemble_session",
    "compile_spec_file",
    "resolve_spec_file",
]

_DEFAULT_LEVEL = RecordingLevel.L2  # the recorder's ceiling; each turn's plan sets its level

RecordSink = Callable[[msgspec.Struct, object], None]


class AssemblyError(RSPPError):
    """A session cannot be assembled (bad spec, provider, admission); says how to fix it."""


class SessionTransport(Protocol):
    """What the assembly needs from a transport (loopback, WebSocket, ...)."""

    def output(self, port: str, event: Any) -> None: ...

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None: ...

    def attach(self, session: SessionActor, driver: Any,
               make_signal: Callable[[SignalName, Emitter, str | None, str], ControlSignal]
               | None = None) -> None: ...


TransportT = TypeVar("TransportT", bound=SessionTransport)


@dataclass(frozen=True, slots=True)
class AssemblyOptions:
    session_id: str = "local-session"
    tenant_id: str = LOCAL_TENANT
    authority_epoch: int = 1
    #: wall-clock budgets are enforced in real time (live transports); reported otherwise
    enforce_budgets: bool = False
    #: recording level of the timeline (None: the plan's level); set, the session also records
    #: what ``rspp replay`` needs (provider-node outputs; L2 keeps audio ingress payloads)
    record_level: RecordingLevel | None = None
    #: the timeline (JSON Lines) exported asynchronously while the session runs
    timeline: Path | None = None
    #: the timeline's durable export instead of the file (F-154): a sink per session id
    #: (e.g. :class:`~rspp.observability.HttpExportSink`), written asynchronously
    timeline_sink: Callable[[str], TimelineSink] | None = None
    #: the recorder's buffer (items) of what is not exported yet; past its fill
    #: thresholds the level downgrades (F-176); None: a large default
    timeline_buffer: int | None = None
    #: Prometheus text / span / JSON log files written when the session ends
    metrics_out: Path | None = None
    trace_out: Path | None = None
    log_out: Path | None = None
    #: feed these metrics/tracer/logger while the session runs (tests, servers)
    telemetry: TelemetryTargets | None = None
    #: turn-start snapshots (None: the in-process bundle of the local runner)
    snapshots: SnapshotSource | None = None
    #: admission policy snapshot (None: the in-process bundle's)
    admission_policy: AdmissionPolicy | None = None
    runtime_id: str = LOCAL_RUNTIME_ID
    #: also called with every record the session makes (the runner's latency table)
    record_tap: Callable[[msgspec.Struct], None] | None = None
    #: the runtime's circuit breakers (F-057): the process running sessions passes one
    #: registry to all of them, so a circuit opened in one session holds for the next;
    #: None: a registry of this session only
    circuits: CircuitRegistry | None = None
    #: the runtime's provider HTTP connections (F-105): the process running sessions passes
    #: one pool to all of them, so their HTTP adapters share an endpoint's connections;
    #: None: each adapter builds its own client
    http_pool: HttpClientPool | None = None
    #: the runtime's dynamic batching (F-051): the process running sessions passes one to
    #: all of them, so calls of a provider configured with ``batching`` share requests across
    #: sessions; None: such an adapter batches only its own session's calls
    batcher: ProviderBatcher | None = None
    #: the runtime's admission (F-050): the process running sessions passes one to all of
    #: them, so a tenant's concurrent-session and turns-per-minute quotas hold across its
    #: sessions on the runtime; None: an admission of this session only
    admission: LocalAdmission | None = None
    #: the runtime's shared execution pool (F-105, F-109, F-174) and this session's key in
    #: its fair queueing (None: the session id); None: no pool limits
    pool: ExecutionPool | None = None
    fairness_key: str | None = None
    #: the wall-clock skew the session's timebase tolerates before it corrects its wall
    #: stamps (NF-018; each correction is a ``clock_skew`` note on the timeline), and who
    #: else is told of a correction (a server's metrics)
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS
    on_clock_skew: Callable[[SkewEvent], None] | None = None
    #: the session's priority (``background``: its turns yield the runtime's interactive
    #: headroom, F-173; anything else: interactive)
    priority: str = "interactive"
    #: the input is a file (``rspp run``): it never loses input (a lossless session:
    #: blocking ingress, no time-based drops) and, unless budgets are enforced (real
    #: time), provider timeouts only guard against a hung provider (``STALL_GUARD_MS``)
    file_source: bool = False
    #: the session's state (F-155): nodes' ``ctx.state`` handles come from it (turn-scoped
    #: nodes: turn-ephemeral, session-scoped: session-hot); None: an in-memory one.
    #: A served session passes one backed by the control plane (checkpoints, resume)
    state: StateManager | None = None
    #: the graph entries the transport feeds (``input.<port>``); the graph must take at least
    #: one: a WAV (``rspp run``) is audio only, a live transport also carries typed text
    inputs: tuple[str, ...] = ("audio",)
    #: debug events for the whole session (F-027, ``rspp run --debug``); off, debug capture
    #: can still be turned on for a while (:meth:`AssembledSession.capture_debug`, F-076)
    debug: bool = False
    #: the runtime's debug-capture slots (F-076): the process running sessions passes one
    #: to all of them, so at most its ``limit`` sessions capture at once; None: no limit
    debug_slots: DebugCaptureSlots | None = None
    #: in-band metrics events in the timeline (F-026, ``rspp run --metrics-events``): node
    #: latency, edge queue depth and node-reported metrics at each turn's end and at the end
    metrics_events: bool = False
    #: which sessions' timelines record their events (F-071): an unsampled session keeps
    #: only its OR-02 evidence (gate 5 needs it for every accepted turn); None: all
    sampling: SamplingPolicy | None = None
    #: what the timeline and the JSON logs redact (F-073, NF-014): the built-in PII rules
    #: plus these rules, audio masking, the audit file; None: the built-in PII rules only
    redaction: RedactionConfig | None = None


#: Provider "no progress" timeout of a file run that is not real time: the file is
#: processed as fast as the machine allows, so a provider's wall-clock pace measures the
#: machine, not the provider; the timeout only guards against a hung provider.
STALL_GUARD_MS = 30_000


def compile_spec_file(path: Path) -> GraphDefinition:
    """Compile a PipelineSpec file strictly; errors name the file and how to fix it."""
    if not path.exists():
        raise AssemblyError(f"SPEC {path}: file not found; pass a PipelineSpec YAML such as "
                            "pipelines/examples/voice_assistant.yaml")
    try:
        return compile_spec(load_spec(path, strict=True), adapters=PROVIDER_CATALOG,
                            catalog=NodeCatalog.for_spec(path))
    except SpecInvalid as exc:
        raise _spec_error(path, exc) from None


def resolve_spec_file(path: Path, *, tenant: str, session: str,
                      layers: Path | None) -> EffectiveSpec:
    """The spec at ``path`` with the environment, ``tenant`` and ``session`` layers of the
    ``layers`` file applied (inserted nodes, chosen providers, overridden values; F-081)."""
    if not path.exists():
        raise AssemblyError(f"SPEC {path}: file not found; pass a PipelineSpec YAML such as "
                            "pipelines/examples/voice_assistant.yaml")
    try:
        config = load_layers(layers) if layers is not None else ConfigLayers()
    except SpecInvalid as exc:
        raise _spec_error(layers or path, exc) from None
    try:
        return resolve_effective(load_spec(path, strict=True), tenant=tenant, session=session,
                                 env=dict(os.environ), layers=config,
                                 catalog=NodeCatalog.for_spec(path))
    except SpecInvalid as exc:
        raise _spec_error(path, exc) from None


def _spec_error(path: Path, exc: SpecInvalid) -> AssemblyError:
    first = exc.issues[0] if exc.issues else None
    where = (f"{first.file}:{first.line}:{first.col}: {first.path}: {first.message}; "
             f"{first.hint}" if first is not None else f"{path}: {exc}")
    more = f" (+{len(exc.issues) - 1} more)" if len(exc.issues) > 1 else ""
    return AssemblyError(f"{where}{more}; run `rspp lint --strict {path}` for every issue "
                         "(SPEC)")


def _register_secrets(config: object) -> None:
    """Resolve every ``env://``/``file://`` reference in a provider config for this session.

    Resolving registers the value with the process redactor, so it is scrubbed from
    every record, log line and printed line from the start; an unresolvable reference
    is left to the adapter, which reports it when it is built or used.
    """
    if isinstance(config, str):
        if config.startswith(("env://", "file://")):
            with contextlib.suppress(SecretConfigError):
                SecretRef(config).resolve()
    elif isinstance(config, Mapping):
        for value in config.values():
            _register_secrets(value)
    elif isinstance(config, list | tuple):
        for value in config:
            _register_secrets(value)


def _services(gd: GraphDefinition, session_id: str, sink: Any,
              circuits: CircuitRegistry, *, min_timeout_ms: int = 1000,
              http_pool: HttpClientPool | None = None,
              batcher: ProviderBatcher | None = None) -> NodeServices:
    providers: dict[str, Any] = {}
    chains: dict[str, tuple[str, ...]] = {}
    timeouts: dict[str, int] = {}
    policies: dict[str, InvocationPolicy] = {}
    prices: dict[str, dict[str, float]] = {"llm": {}, "stt": {}, "tts": {}}
    configs: dict[str, dict[str, object]] = {}
    for b in gd.providers:
        chain = (b.primary, *b.fallbacks)
        chains[b.modality] = chain
        timeouts[b.modality] = max(int(b.timeout.value), min_timeout_ms)
        config = dict(b.config.items()) if hasattr(b.config, "items") else {}
        configs[b.modality] = config
        try:  # retry/backoff/circuit tuning of the modality (F-057, F-059)
            policies[b.modality] = policy_from_config(
                chain, timeouts[b.modality], config, path=f"providers.{b.modality}.config")
        except PolicyError as exc:
            raise AssemblyError(str(exc)) from None
        for i, pid in enumerate(chain):
            if pid in providers:
                continue
            cfg = {k: v for k, v in config.items() if k not in POLICY_CONFIG_KEYS} if i == 0 else {}
            _register_secrets(cfg)
            try:
                providers[pid] = build_provider(pid, cfg, modality=b.modality,
                                                http_pool=http_pool, batcher=batcher)
            except RSPPError as exc:  # unknown adapter/option, missing API key: before any audio
                raise AssemblyError(str(exc)) from None
        price = config.get("price")
        if isinstance(price, int | float) and b.modality in prices:
            prices[b.modality][b.primary] = float(price)
    table = PriceTable(per_1k_llm_tokens=prices["llm"], per_stt_audio_minute=prices["stt"],
                       per_1k_tts_chars=prices["tts"])
    try:
        caps = cost_caps_from_config(configs)
    except PolicyError as exc:
        raise AssemblyError(str(exc)) from None
    return NodeServices(providers=providers, chains=chains, session_id=session_id,
                        pipeline_version=f"{gd.name}@{gd.version}", signal_sink=sink,
                        timeouts_ms=timeouts, policies=policies, circuits=circuits,
                        meter=CostMeter(session_id, caps=caps, prices=table))


def _tenant_tokens(admission: LocalAdmission, tenant_id: str
                   ) -> Callable[[UsageKind, float], None]:
    """Counts the session's LLM tokens against its tenant's per-minute quota (F-050)."""
    def charged(kind: UsageKind, amount: float) -> None:
        if kind is UsageKind.LLM_TOKENS:
            admission.charge_tokens(tenant_id, int(amount))

    return charged


def _remaining_budget(driver: TurnDriver) -> Callable[[str], int | None]:
    """Remaining turn budget (ms) of ``turn_id`` for provider retries (F-059).

    ``None`` (not bounded) when the turn is no longer the tracked one or its budget is
    advisory (runs faster than real time report budgets, never enforce them).
    """
    def remaining(turn_id: str) -> int | None:
        tracker = driver.budgets
        if tracker is None or tracker.turn_id != turn_id or tracker.turn.advisory:
            return None
        return tracker.turn.remaining_ms()

    return remaining


@dataclass(slots=True)
class AssembledSession(Generic[TransportT]):
    """A session built by :func:`assemble_session`; ``start`` it, then ``finish`` it."""

    graph: RuntimeGraph
    session: SessionActor
    driver: TurnDriver
    transport: TransportT
    recorder: TimelineRecorder
    services: NodeServices
    admission: LocalAdmission
    authority: AuthorityGuard
    options: AssemblyOptions
    #: the session's state classes (turn-ephemeral, session-hot, session-durable)
    state: StateManager
    dead_letters: list[str] = field(default_factory=list)
    _exporter: asyncio.Task[None] | None = None
    #: what redacted the timeline and logs (its audit trail and counts, F-073, NF-014)
    redactor: Redactor | None = None
    _telemetry: SessionTelemetry | None = None
    _files: TelemetryFiles | None = None
    _sampler: asyncio.Task[None] | None = None
    _finished: bool = False
    #: called with every record the session appends (after the recorder and telemetry;
    #: the transport's ``on_record`` first); servers add theirs
    listeners: list[Callable[[msgspec.Struct], None]] = field(default_factory=list)
    #: called with each turn's OR-02 evidence once the recorder accepted it
    evidence_listeners: list[Callable[[object], None]] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        return self.session.session_id

    def usage_summary(self) -> UsageSummary:
        """Turns, provider usage and estimated cost of the session so far (F-075)."""
        meter = self.services.meter or CostMeter(self.session_id,
                                                 tenant_id=self.options.tenant_id)
        return meter.summary()

    def make_signal(self, name: SignalName, emitter: Emitter, turn_id: str | None,
                    reason: str) -> ControlSignal:
        """A transport signal stamped with the session's identity and current epoch."""
        return self.driver.stamp.signal(name, emitter, authority_epoch=self.authority.epoch,
                                        turn_id=turn_id, reason=reason)

    def capture_debug(self, seconds: float) -> None:
        """Debug events of this session only, for ``seconds`` (F-076); then off again.

        The kernel emits them (TelemetryLane ``debug`` records at the current sequence,
        so a replay without them matches); the recorder keeps them while the capture
        lasts and the first one after it turns the session's debug off. ``seconds`` 0
        ends a capture now.
        """
        slots = self.options.debug_slots
        if seconds == 0:
            self.recorder.debug_capture.disable(self.session_id)
            self.session.set_debug(self.options.debug)
            if slots is not None:
                slots.release(self.session_id)
            return
        if slots is not None and not slots.claim(self.session_id, seconds):
            raise InputRejected("seconds", (
                f"this runtime lets {slots.limit} session(s) capture debug events at once "
                "(rspp serve --max-debug-captures) and they are taken; end a capture "
                "(`seconds` 0) or try again when one expires"))
        self.recorder.debug_capture.enable(self.session_id, seconds)
        self.session.signals.telemetry(kind="debug", reason=f"capture_on:{seconds:g}s",
                                       at_sequence=max(self.session._seq - 1, 0))
        self.session.set_debug(True)

    def authority_changed(self, new_epoch: int | None, reason: str) -> None:
        """The lease rotated to ``new_epoch`` (same holder) or was lost (``None``).

        The guard changes at once (the egress gate refuses the old epoch from this instant)
        and the turn driver applies the lifecycle at its next scheduling point: an Active
        turn is fenced and ends ``deauthorized_drain``, ``abort(authority_loss)``, ``close``
        (T8), an Opening one drains pre-open (T4); later turns open at the new epoch or,
        revoked, are refused (F-156, F-157).
        """
        self.driver.authority_changed(new_epoch, reason)

    async def start(self) -> None:
        if self._telemetry is not None:
            self._telemetry.started()
            self._sampler = asyncio.create_task(self._telemetry.run(), name="telemetry-sampler")
        await self.session.start()

    async def finish(self, on_stopped: Callable[[], None] | None = None) -> None:
        """End the session: an Active turn aborts ``session_end``; flush every record.

        ``on_stopped`` runs once the session stopped, before the timeline closes (the
        transport's last signals, e.g. ``ended``).
        """
        if self._finished:
            return
        self._finished = True
        o = self.options
        if o.debug_slots is not None:
            o.debug_slots.release(self.session_id)
        try:
            try:
                await self.session.drain()
                self.driver.end_session()
                await self.session.drain()
            finally:
                await self.session.stop()
                await self.driver.aclose()
                for p in self.services.providers.values():
                    with contextlib.suppress(Exception):
                        await p.aclose()
                if on_stopped is not None:
                    on_stopped()
        finally:
            self.admission.end_session(o.tenant_id, self.session_id)
            self.recorder.close()
            if self._exporter is not None:
                await self._exporter
            audit = o.redaction.audit_path if o.redaction is not None else None
            if audit is not None and self.redactor is not None:
                data = b"".join(x + b"\n" for x in self.redactor.audit_lines())
                await asyncio.to_thread(Path(audit).write_bytes, data)
            if self._telemetry is not None and self._files is not None:
                if self._sampler is not None:
                    self._sampler.cancel()
                    await asyncio.wait({self._sampler})
                self._telemetry.stopped()
                self._files.close()


def _is_debug(rec: msgspec.Struct) -> bool:
    """A kernel debug record (TelemetryLane, tagged ``debug``)."""
    return (isinstance(rec, EventRecord) and rec.lane is Lane.TELEMETRY
            and f":{EventKind.DEBUG}:" in rec.event_id)


def _skew_notes(session: SessionActor, tell: Callable[[SkewEvent], None] | None
                ) -> Callable[[SkewEvent], None]:
    """The timebase's ``on_skew`` (NF-018): each wall-clock correction becomes a
    ``clock_skew`` note (TelemetryLane) beside the session's last record, taking no
    sequence number (a replay, on its virtual clock, sees no skew: later records must not
    shift). The timebase reports inside a wall-clock read (a record being stamped), so the
    note is made just after, on the event loop."""
    loop = asyncio.get_running_loop()

    def note(ev: SkewEvent) -> None:
        session.signals.telemetry(kind="clock_skew", reason=ev.describe(),
                                  at_sequence=session.last_sequence)
        if tell is not None:
            tell(ev)

    def on_skew(ev: SkewEvent) -> None:
        loop.call_soon(note, ev)

    return on_skew


def assemble_session(gd: GraphDefinition, opts: AssemblyOptions,
                     make_transport: Callable[[RecordSink], TransportT]
                     ) -> AssembledSession[TransportT]:
    """Build one session of ``gd`` around the transport ``make_transport(record)`` returns."""
    graph = RuntimeGraph.from_definition(gd)
    if not set(opts.inputs) & set(graph.entry_ports()):
        typed = " (speech) or `{from: input.text, to: <llm>.text}` (typed text)" \
            if "text" in opts.inputs else ""
        raise AssemblyError(f"pipeline {gd.name}: the graph has no "
                            + " or ".join(f"`input.{p}`" for p in opts.inputs)
                            + " entry; add an edge `{from: input.audio, to: <vad>.audio}`"
                            + typed)
    clock = SystemClock()
    # One time base for the whole session: records of the kernel, transport,
    # providers and recorder all carry milliseconds since the session started.
    timebase = Timebase(clock, max_skew_ms=opts.max_skew_ms)
    size = opts.timeline_buffer  # control and evidence keep their own room (F-176)
    recorder = TimelineRecorder(timebase, RecorderOptions(
        capacity=size or 200_000, control_reserve=max(1024, size // 2) if size else 100_000,
        evidence_reserve=max(256, size // 50) if size else 4096,
        level=opts.record_level or _DEFAULT_LEVEL), sampling=opts.sampling)
    sid = opts.session_id
    tele_box: list[SessionTelemetry] = []  # set just before the session starts
    # kernel-overhead timing (instrument) only when someone consumes it (F-104)
    want_tele = opts.telemetry is not None or any(
        p is not None for p in (opts.metrics_out, opts.trace_out, opts.log_out))

    taps: list[Callable[[msgspec.Struct], None]] = []  # the transport watches the records
    if opts.record_tap is not None:
        taps.append(opts.record_tap)

    debug_box: list[SessionActor] = []  # set once the session exists

    def record(rec: msgspec.Struct, payload: object = None) -> None:
        if not opts.debug and _is_debug(rec):  # on-demand capture (F-076): while it lasts
            if not recorder.debug_event(rec) and debug_box:  # type: ignore[arg-type]
                debug_box[0].set_debug(False)
            return
        recorder.append(rec, payload)
        if tele_box:
            tele_box[0].on_record(rec, payload)
        for tap in taps:
            tap(rec)

    # a bad provider fails here, before any output exists
    services = _services(gd, sid, record, opts.circuits or CircuitRegistry(clock),
                         min_timeout_ms=STALL_GUARD_MS if (
                             opts.file_source and not opts.enforce_budgets) else 1000,
                         http_pool=opts.http_pool, batcher=opts.batcher)
    snapshots = opts.snapshots
    admission_policy = opts.admission_policy
    if snapshots is None:
        bundle = local_bundle(gd, now_ms=clock.wall_ms(), tenant_id=opts.tenant_id,
                              recording_level=opts.record_level or RecordingLevel.L1)
        snapshots = StaticSnapshotSource(bundle)
        admission_policy = admission_policy or bundle.admission_policy
    capture = ReplayableCapture(record) if opts.record_level is not None else None
    admission = opts.admission or LocalAdmission(clock)
    if admission_policy is not None:
        admission.set_policy(admission_policy)
    admitted = admission.admit_session(opts.tenant_id, sid, priority_of(opts.priority))
    if not admitted.admitted:
        raise AssemblyError(f"session {sid} was not admitted by the runtime's admission "
                            f"({admitted.kind.value}: {admitted.outcome.reason})")
    # every input is checked above: only now do outputs exist (no empty timeline on errors)
    exporter_task: asyncio.Task[None] | None = None
    redactor = (opts.redaction or RedactionConfig()).redactor(default_redactor())
    if opts.timeline is not None:
        opts.timeline.parent.mkdir(parents=True, exist_ok=True)
        opts.timeline.write_bytes(b"")
        # PII (NF-014) and the value of every configured secret never reach the file
        exporter = TimelineExporter(recorder, JsonLinesFileSink(opts.timeline), timebase,
                                    redactor=redactor)
        exporter_task = asyncio.create_task(exporter.run(), name="timeline-exporter")
    elif opts.timeline_sink is not None:  # durable export: retried, never blocking (F-154)
        exporter = TimelineExporter(recorder, opts.timeline_sink(sid), timebase,
                                    redactor=redactor)
        exporter_task = asyncio.create_task(exporter.run(), name="timeline-exporter")
    authority = AuthorityGuard(opts.authority_epoch)
    resolver = PlanResolver(gd, snapshots, clock, runtime_id=opts.runtime_id)
    transport = make_transport(record)
    resolver.capabilities = SessionCapabilities(transport, services.providers)  # F-161
    tap = getattr(transport, "on_record", None)
    if callable(tap):
        taps.append(tap)
    state = opts.state if opts.state is not None else StateManager(sid)
    services.session_state = state.session_hot
    holder: dict[str, TurnDriver] = {}
    dead: list[str] = []
    evidence_taps: list[Callable[[object], None]] = []

    def evidence(ev: Any) -> bool:
        ok = recorder.append_evidence(ev)
        if ok:
            for tap in evidence_taps:
                tap(ev)
        return ok

    def dead_letter(dl: Any) -> None:
        dead.append(f"{dl.error.node_id}:{dl.error.error_code}:{dl.error.message}")
        if "driver" in holder:
            holder["driver"].node_failed(dl)

    try:
        session = SessionActor(graph, session_id=sid, clock=clock,
                               options=SessionOptions(seed=0,
                                                      instrument=want_tele or opts.metrics_events,
                                                      metrics_events=opts.metrics_events,
                                                      lossless=opts.file_source,
                                                      state_factory=state.node_state,
                                                      fairness_key=opts.fairness_key,
                                                      debug=opts.debug),
                               registry=capture.registry if capture is not None else None,
                               pool=opts.pool,
                               output_sink=transport.output, signal_sink=record,
                               dead_letter_sink=dead_letter, timebase=timebase,
                               services=services)
    except RSPPError as exc:  # a node type nobody registered, a node refusing its params
        admission.end_session(opts.tenant_id, sid)
        recorder.close()
        if exporter_task is not None:
            exporter_task.cancel()
        raise AssemblyError(f"pipeline {gd.name}@{gd.version}: {exc}") from None
    session.signals.authority_epoch = authority.epoch
    session.signals.payload_sink = record  # in-band metrics travel with their values
    debug_box.append(session)
    timebase.on_skew = _skew_notes(session, opts.on_clock_skew)
    if capture is not None:
        capture.bind(session)
    reply_ports = tuple(p for p in graph.exit_ports() if not p.startswith("transcript"))

    base_chains = dict(services.chains)
    meter = services.meter = services.meter or CostMeter(sid)
    meter.tenant_id = opts.tenant_id
    meter.on_charge = _tenant_tokens(admission, opts.tenant_id)

    def prefer(providers: Any) -> None:
        for modality, pid in providers.items():
            rest = tuple(p for p in services.chains.get(modality, ()) if p != pid)
            services.chains[modality] = (pid, *rest)

    def on_plan(plan: Any) -> None:
        meter.begin_turn()
        prefer(plan.provider_bindings)
        prefer(holder["driver"].overload.providers)  # the degrade posture wins (F-048)

    def on_posture(providers: Any) -> None:
        """Overload posture changed: degraded providers now, or back to the normal chains."""
        if not providers:
            services.chains.update(base_chains)
        prefer(providers)

    driver = TurnDriver(session, resolver, tenant_id=opts.tenant_id, authority=authority,
                        admission=admission, record=record, evidence=evidence,
                        on_plan=on_plan, reply_ports=reply_ports or ("audio",),
                        invocations=services.invocation_outcomes,
                        enforce_budgets=opts.enforce_budgets)
    holder["driver"] = driver
    driver.node_scopes.in_flight = services.in_flight  # invocation cancels name their scope
    if authority.epoch > 1:  # taken over from another owner: its turn ids cannot repeat
        driver.stamp.ids.epoch = authority.epoch
    driver.overload.on_change = on_posture
    services.hooks = driver
    services.remaining_budget_ms = _remaining_budget(driver)
    services.next_sequence = session._next_seq
    services.clock = timebase
    services.authority_epoch = authority.epoch
    driver.on_stop_playback = transport.stop_playback
    driver.on_epoch = lambda epoch: setattr(services, "authority_epoch", epoch)
    out = AssembledSession(graph=graph, session=session, driver=driver, transport=transport,
                           recorder=recorder, services=services, admission=admission,
                           authority=authority, options=opts, state=state,
                           dead_letters=dead, redactor=redactor,
                           _exporter=exporter_task, listeners=taps,
                           evidence_listeners=evidence_taps)
    transport.attach(session, driver, out.make_signal)
    out.listeners.append(turn_end_listener(admission.turn_ended, sid))  # F-172 capacity
    if want_tele:
        files = TelemetryFiles(metrics_out=opts.metrics_out, trace_out=opts.trace_out,
                               log_out=opts.log_out, targets=opts.telemetry, redactor=redactor)
        tele = SessionTelemetry(files.targets, session_id=sid,
                                pipeline_version=graph.pipeline_version)
        tele.attach(
            session,
            cancel_ms=lambda tid: t.cancel_fence_ms if (t := driver.timings.get(tid)) else None,
            node_providers={nid: services.chains[h.decl.type][0] for nid, h in
                            session.hosts.items() if services.chains.get(h.decl.type)})
        services.on_controller = tele.on_controller
        driver.node_scopes.observer = tele.on_node_cancel
        tele_box.append(tele)
        out._telemetry, out._files = tele, files
    return out
