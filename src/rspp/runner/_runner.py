"""The local runner (F-125): one spec, one loopback session, every runtime guarantee on.

:func:`run_local` compiles the spec, starts an in-process control plane
(static snapshot source, local admission, an authority lease), a session with
the built-in nodes and the turn driver, streams the input WAV through the
loopback transport, and returns per-turn transcripts, replies and latencies.
The timeline (JSON Lines) is exported asynchronously while the session runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

import rspp.nodes  # noqa: F401  (registers the built-in node types)
from rspp.contracts import RecordingLevel
from rspp.errors import RSPPError
from rspp.kernel import RuntimeGraph, SessionActor, SessionOptions, SystemClock, Timebase
from rspp.nodes import NodeServices, build_provider
from rspp.observability import (
    JsonLinesFileSink,
    RecorderOptions,
    Redactor,
    TimelineExporter,
    TimelineRecorder,
)
from rspp.providers import PROVIDER_CATALOG
from rspp.runner._bundle import LOCAL_RUNTIME_ID, LOCAL_TENANT, local_bundle
from rspp.runner._replayable import ReplayableCapture
from rspp.runner._telemetry import SessionTelemetry, TelemetryFiles, TelemetryTargets
from rspp.spec import GraphDefinition, SpecInvalid, compile_spec, load_spec
from rspp.transports import LoopbackOptions, LoopbackTransport, read_wav, write_wav
from rspp.turns._admission import LocalAdmission
from rspp.turns._authority import AuthorityGuard
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._snapshot_source import StaticSnapshotSource
from rspp.turns._turn_driver import TurnDriver

__all__ = ["RunOptions", "RunResult", "RunnerError", "TurnReport", "run_local"]

_DEFAULT_LEVEL = RecordingLevel.L2  # the recorder's ceiling; each turn's plan sets its level


class RunnerError(RSPPError):
    """Bad runner input (spec, WAV, options); the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    spec: Path
    input: Path
    output: Path | None = None
    timeline: Path | None = None
    real_time: bool = False
    barge_in: Path | None = None
    barge_in_after_s: float = 0.0
    session_id: str = "local-session"
    tenant_id: str = LOCAL_TENANT
    authority_epoch: int = 1
    end_of_utterance_at_s: tuple[float, ...] = ()
    #: Prometheus text exposition written at the end of the run (F-068, F-104)
    metrics_out: Path | None = None
    #: finished spans, one JSON object per line (F-070)
    trace_out: Path | None = None
    #: JSON log lines with the correlation ids (F-067)
    log_out: Path | None = None
    #: feed these metrics/tracer/logger while the session runs (tests, servers)
    telemetry: TelemetryTargets | None = None
    #: recording level of the timeline (None: the plan's level); set, the runner also records
    #: what ``rspp replay`` needs (provider-node outputs; L2 keeps audio ingress payloads)
    record_level: RecordingLevel | None = None


@dataclass(slots=True)
class TurnReport:
    turn_id: str
    terminal: str | None
    reason: str | None
    transcript: str
    reply: str
    degraded: bool
    played_s: float
    turn_open_decision_ms: float | None
    first_output_ms: float | None
    end_to_end_ms: float | None
    cancel_fence_ms: float | None


@dataclass(slots=True)
class RunResult:
    turns: list[TurnReport]
    partials: list[str]
    output_seconds: float
    timeline_lines: int
    after_fence_outputs: int
    signals: list[tuple[str, str]]
    diagnostics: list[str] = field(default_factory=list)
    dead_letters: list[str] = field(default_factory=list)

    @property
    def transcript(self) -> str:
        return " ".join(t.transcript for t in self.turns if t.transcript)


def _compile(path: Path) -> GraphDefinition:
    if not path.exists():
        raise RunnerError(f"SPEC {path}: file not found; pass a PipelineSpec YAML such as "
                          "pipelines/examples/voice_assistant.yaml")
    try:
        return compile_spec(load_spec(path, strict=True), adapters=PROVIDER_CATALOG)
    except SpecInvalid as exc:
        raise RunnerError(f"SPEC {path}: {exc}; run `rspp lint --strict {path}` for every issue") \
            from None


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
                providers[pid] = build_provider(pid, cfg, modality=b.modality)
            except RSPPError as exc:  # unknown adapter/option, missing API key: before any audio
                raise RunnerError(str(exc)) from None
    return NodeServices(providers=providers, chains=chains, session_id=session_id,
                        pipeline_version=f"{gd.name}@{gd.version}", signal_sink=sink,
                        timeouts_ms=timeouts)


async def run_local(opts: RunOptions) -> RunResult:
    """Run ``opts.spec`` on ``opts.input`` (see the module docstring)."""
    gd = _compile(opts.spec)
    try:
        pcm, rate = read_wav(opts.input)
    except RSPPError as exc:
        raise RunnerError(f"--input {exc}") from None
    try:
        barge = read_wav(opts.barge_in) if opts.barge_in is not None else None
    except RSPPError as exc:
        raise RunnerError(f"--barge-in {exc}") from None
    barge_pcm = None
    if barge is not None:
        from rspp.providers.offline import resample_pcm

        barge_pcm = resample_pcm(barge[0], barge[1], rate)
    graph = RuntimeGraph.from_definition(gd)
    if "audio" not in graph.entry_ports():
        raise RunnerError(f"SPEC {opts.spec}: the graph has no `input.audio` entry; "
                          "add an edge `{from: input.audio, to: <vad>.audio}`")
    clock = SystemClock()
    # One time base for the whole session: records of the kernel, transport,
    # providers and recorder all carry milliseconds since the session started.
    timebase = Timebase(clock)
    recorder = TimelineRecorder(timebase, RecorderOptions(capacity=200_000, control_reserve=100_000,
                                                       evidence_reserve=4096,
                                                       level=opts.record_level or _DEFAULT_LEVEL))
    exporter_task: asyncio.Task[None] | None = None
    if opts.timeline is not None:
        opts.timeline.parent.mkdir(parents=True, exist_ok=True)
        opts.timeline.write_bytes(b"")
        exporter = TimelineExporter(recorder, JsonLinesFileSink(opts.timeline), timebase,
                                    redactor=Redactor())  # PII never reaches the file (NF-014)
        exporter_task = asyncio.create_task(exporter.run(), name="timeline-exporter")

    sid = opts.session_id
    files: TelemetryFiles | None = None
    tele: SessionTelemetry | None = None  # set just before the session starts
    # kernel-overhead timing (instrument) only when someone consumes it (F-104)
    want_tele = opts.telemetry is not None or any(
        p is not None for p in (opts.metrics_out, opts.trace_out, opts.log_out))

    def record(rec: msgspec.Struct, payload: object = None) -> None:
        recorder.append(rec, payload)
        if tele is not None:
            tele.on_record(rec, payload)

    services = _services(gd, sid, record)
    bundle = local_bundle(gd, now_ms=clock.wall_ms(), tenant_id=opts.tenant_id,
                          recording_level=opts.record_level or RecordingLevel.L1)
    capture = ReplayableCapture(record) if opts.record_level is not None else None
    admission = LocalAdmission(clock)
    if bundle.admission_policy is not None:
        admission.set_policy(bundle.admission_policy)
    if not admission.admit_session(opts.tenant_id, sid).admitted:
        raise RunnerError(f"session {sid} was not admitted by the local admission policy")
    authority = AuthorityGuard(opts.authority_epoch)
    resolver = PlanResolver(gd, StaticSnapshotSource(bundle), clock, runtime_id=LOCAL_RUNTIME_ID)
    transport = LoopbackTransport(pcm, rate, LoopbackOptions(
        real_time=opts.real_time, barge_in=barge_pcm, barge_in_after_s=opts.barge_in_after_s,
        end_of_utterance_at_s=opts.end_of_utterance_at_s),
        record=record)
    holder: dict[str, TurnDriver] = {}
    dead: list[str] = []

    def dead_letter(dl: Any) -> None:
        dead.append(f"{dl.error.node_id}:{dl.error.error_code}:{dl.error.message}")
        if "driver" in holder:
            holder["driver"].node_failed(dl)

    session = SessionActor(graph, session_id=sid, clock=clock,
                           options=SessionOptions(seed=0, instrument=want_tele),
                           registry=capture.registry if capture is not None else None,
                           output_sink=transport.output, signal_sink=record,
                           dead_letter_sink=dead_letter, timebase=timebase,
                           services=services)
    session.signals.authority_epoch = authority.epoch
    if capture is not None:
        capture.bind(session)
    reply_ports = tuple(p for p in graph.exit_ports() if not p.startswith("transcript"))

    def on_plan(plan: Any) -> None:
        for modality, pid in plan.provider_bindings.items():
            rest = tuple(p for p in services.chains.get(modality, ()) if p != pid)
            services.chains[modality] = (pid, *rest)

    driver = TurnDriver(session, resolver, tenant_id=opts.tenant_id, authority=authority,
                        admission=admission, record=record, evidence=recorder.append_evidence,
                        on_plan=on_plan, reply_ports=reply_ports or ("audio",),
                        invocations=services.invocation_outcomes,
                        # wall-clock budgets are enforced in real time; reported otherwise
                        enforce_budgets=opts.real_time)
    holder["driver"] = driver
    services.hooks = driver
    services.next_sequence = session._next_seq
    services.clock = timebase
    services.authority_epoch = authority.epoch
    driver.on_stop_playback = transport.stop_playback

    def make_signal(name: Any, emitter: Any, turn_id: str, reason: str) -> Any:
        return driver.stamp.signal(name, emitter, authority_epoch=authority.epoch,
                                   turn_id=turn_id, reason=reason)

    transport.attach(session, driver, make_signal)
    sampler: asyncio.Task[None] | None = None
    if want_tele:
        files = TelemetryFiles(metrics_out=opts.metrics_out, trace_out=opts.trace_out,
                               log_out=opts.log_out, targets=opts.telemetry)
        tele = SessionTelemetry(files.targets, session_id=sid,
                                pipeline_version=graph.pipeline_version)
        tele.attach(
            session,
            cancel_ms=lambda tid: t.cancel_fence_ms if (t := driver.timings.get(tid)) else None,
            node_providers={nid: services.chains[h.decl.type][0] for nid, h in
                            session.hosts.items() if services.chains.get(h.decl.type)})
        services.on_controller = tele.on_controller
        tele.started()
        sampler = asyncio.create_task(tele.run(), name="telemetry-sampler")
    try:
        await session.start()
        try:
            await transport.run()
            await session.drain()
            driver.end_session()
            await session.drain()
        finally:
            await session.stop()
            await driver.aclose()
            for p in services.providers.values():
                with contextlib.suppress(Exception):
                    await p.aclose()
    finally:
        admission.end_session(opts.tenant_id, sid)
        recorder.close()
        if exporter_task is not None:
            await exporter_task
        if tele is not None and files is not None:
            if sampler is not None:
                sampler.cancel()
                await asyncio.wait({sampler})
            tele.stopped()
            files.close()
    out_rate = transport.out_rate or rate
    if opts.output is not None:
        write_wav(opts.output, bytes(transport.played), out_rate)
    turns = []
    for row in driver.summary():
        tid = row["turn_id"]
        tout = transport.turns.get(tid)
        turns.append(TurnReport(
            turn_id=tid, terminal=row["terminal"], reason=row["reason"],
            transcript=tout.transcript if tout else "", reply=transport.reply_text_for(tid),
            degraded=bool(tout and tout.degraded),
            played_s=(tout.played_samples / out_rate) if tout else 0.0,
            turn_open_decision_ms=row["turn_open_decision_ms"],
            first_output_ms=row["first_output_ms"], end_to_end_ms=row["end_to_end_ms"],
            cancel_fence_ms=row["cancel_fence_ms"],
        ))
    return RunResult(
        turns=turns, partials=transport.partials,
        output_seconds=len(transport.played) / 2 / out_rate,
        timeline_lines=recorder.stats.appended, after_fence_outputs=len(transport.after_fence),
        signals=transport.signals, diagnostics=driver.diagnostics, dead_letters=dead,
    )
