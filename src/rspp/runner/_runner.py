"""The local runner (F-125): one spec, one loopback session, every runtime guarantee on.

:func:`run_local` compiles the spec, starts an in-process control plane
(static snapshot source, local admission, an authority lease), a session with
the built-in nodes and the turn driver, streams the input WAV through the
loopback transport, and returns per-turn transcripts, replies and latencies.
The timeline (JSON Lines) is exported asynchronously while the session runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from rspp.contracts import RecordingLevel, kind_of
from rspp.errors import RSPPError
from rspp.observability import RedactionConfig, TimelineLine, turn_latencies
from rspp.providers import CircuitRegistry, UsageSummary
from rspp.runner._assembly import (
    AssembledSession,
    AssemblyError,
    AssemblyOptions,
    assemble_session,
    compile_spec_file,
    resolve_spec_file,
)
from rspp.runner._bundle import LOCAL_TENANT
from rspp.runner._telemetry import TelemetryTargets
from rspp.spec import ENV_PREFIX
from rspp.transports import LoopbackOptions, LoopbackTransport, read_wav, write_wav
from rspp.turns import SessionEvent
from rspp.turns._turn_driver import TurnDriver

__all__ = ["RunOptions", "RunProgress", "RunResult", "RunnerError", "TurnReport", "run_local"]


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
    #: user cancel (F-035) this many media seconds after the first reply starts playing
    cancel_after_s: float | None = None
    #: Prometheus text exposition written at the end of the run (F-068, F-104)
    metrics_out: Path | None = None
    #: finished spans, one JSON object per line (F-070)
    trace_out: Path | None = None
    #: JSON log lines with the correlation ids (F-067)
    log_out: Path | None = None
    #: what the timeline and the logs redact, and where the redaction audit goes (F-073)
    redaction: RedactionConfig | None = None
    #: feed these metrics/tracer/logger while the session runs (tests, servers)
    telemetry: TelemetryTargets | None = None
    #: recording level of the timeline (None: the plan's level); set, the runner also records
    #: what ``rspp replay`` needs (provider-node outputs; L2 keeps audio ingress payloads)
    record_level: RecordingLevel | None = None
    #: test hook on the real runner (F-156/F-157): the lease is revoked (``revoke_at_s``) or
    #: rotated to the next epoch (``rotate_at_s``) when the input reaches this media second
    revoke_at_s: float | None = None
    rotate_at_s: float | None = None
    #: the runtime's circuit breakers (F-057): pass one registry to every session the
    #: runtime runs so a circuit opened by one session holds for the next; None: a new one
    circuits: CircuitRegistry | None = None
    #: an interrupt (Ctrl-C): once set, input stops, the active turn ends ``abort(session_end)``,
    #: the session closes and everything produced so far is written (``RunResult.interrupted``)
    stop: asyncio.Event | None = None
    #: debug events of the kernel in the timeline for the whole run (F-027, ``--debug``)
    debug: bool = False
    #: in-band metrics events in the timeline (F-026, ``--metrics-events``)
    metrics_events: bool = False
    #: the wall-clock skew the session tolerates before it corrects (NF-018)
    max_skew_ms: int = 250
    #: configuration layers (``{tenants: {...}, sessions: {...}}``) applied to the spec for
    #: this run's tenant and session: inserted nodes run, chosen providers answer (F-081)
    layers: Path | None = None
    #: the resolved spec of this session (graph, value sources, node origins, session id)
    resolved_out: Path | None = None
    #: called every ``progress_interval_s`` while the session runs
    progress: Callable[[RunProgress], None] | None = None
    progress_interval_s: float = 0.1


@dataclass(frozen=True, slots=True)
class RunProgress:
    """What a live view of a run shows: input position, turn state, latest words."""

    audio_s: float
    total_s: float
    #: ``listening``, ``turn N open`` or ``speaking turn N``
    state: str
    turns: int
    #: the newest partial or final transcript
    transcript: str
    #: the reply text of the newest turn so far
    reply: str


@dataclass(slots=True)
class TurnReport:
    """One turn of a run. Latencies come from the session's timeline records through
    :func:`rspp.observability.turn_latencies`: the definitions ``rspp slo report`` uses."""

    turn_id: str
    terminal: str | None
    reason: str | None
    transcript: str
    reply: str
    degraded: bool
    played_s: float
    #: turn_open_proposed -> turn_open (gate 1)
    turn_open_decision_ms: float | None
    #: end of user speech (VAD) -> turn_open: endpointing wait plus decision
    speech_end_to_turn_open_ms: float | None
    #: end of user speech -> first reply audio (gate 7, "end to end")
    speech_end_to_first_audio_ms: float | None
    #: turn_open -> first reply audio
    turn_open_to_first_audio_ms: float | None
    #: turn_open -> first DataLane output (gate 2)
    first_output_ms: float | None
    cancel_fence_ms: float | None
    #: "vad" (the VAD's last voiced sample) or "ingress" (last input frame before the proposal)
    speech_end_source: str | None = None
    #: a cancelled turn's commit point (F-039): reply seconds that play despite the cancel
    committed_s: float | None = None


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
    #: what an interrupt (``RunOptions.stop``) cut short, e.g. "input at 2.10 s of 9.00 s"
    interrupted: str | None = None
    #: the session's states in order (its SessionLifecycle, F-138)
    session_states: tuple[str, ...] = ()
    #: turns, provider usage and estimated cost of the session (F-075)
    usage: UsageSummary | None = None

    @property
    def transcript(self) -> str:
        return " ".join(t.transcript for t in self.turns if t.transcript)


def _lease_hooks(opts: RunOptions, holder: list[AssembledSession[LoopbackTransport]]
                 ) -> tuple[tuple[float, Callable[[], None]], ...]:
    """``--revoke-at`` / ``--rotate-at``: lease changes at a media second of the input."""
    hooks: list[tuple[float, Callable[[], None]]] = []
    if opts.rotate_at_s is not None:
        hooks.append((opts.rotate_at_s, lambda: holder[0].authority_changed(
            holder[0].authority.epoch + 1, "lease_rotated")))
    if opts.revoke_at_s is not None:
        hooks.append((opts.revoke_at_s, lambda: holder[0].authority_changed(
            None, "lease_revoked")))
    return tuple(sorted(hooks, key=lambda h: h[0]))


#: records kept for the latency table (a long run keeps its first ones only)
_KEEP_RECORDS = 500_000


def _f(value: int | None) -> float | None:
    return None if value is None else float(value)


def _number(turn_id: str) -> str:
    return turn_id.rsplit(":", 1)[-1]


def _snapshot(transport: LoopbackTransport, driver: TurnDriver, total_s: float) -> RunProgress:
    rate = transport.rate or 16000
    if driver.speaking is not None:
        state = f"speaking turn {_number(driver.speaking)}"
    elif driver.active_turn is not None:
        state = f"turn {_number(driver.active_turn)} open"
    else:
        state = "listening"
    last = next(reversed(transport.turns.values()), None) if transport.turns else None
    transcript = (last.transcript if last is not None and last.transcript else
                  transport.partials[-1] if transport.partials else "")
    return RunProgress(audio_s=min(transport.media_samples / rate, total_s), total_s=total_s,
                       state=state, turns=len(driver.order), transcript=transcript,
                       reply=transport.reply_text_for(last.turn_id) if last is not None else "")


async def _report_progress(report: Callable[[RunProgress], None], interval_s: float,
                           transport: LoopbackTransport, driver: TurnDriver,
                           total_s: float) -> None:
    """Call ``report`` with a fresh snapshot every ``interval_s`` (a display refresh)."""
    while True:
        report(_snapshot(transport, driver, total_s))
        await asyncio.sleep(interval_s)


async def _feed(transport: LoopbackTransport, stop: asyncio.Event | None) -> bool:
    """Stream the input; True when ``stop`` was set first (the input task is then cancelled)."""
    feeding = asyncio.create_task(transport.run(), name="loopback-input")
    if stop is None:
        await feeding
        return False
    waiting = asyncio.create_task(stop.wait(), name="run-interrupt")
    try:
        await asyncio.wait({feeding, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # whichever still runs (also when this task itself is cancelled)
        for task in (feeding, waiting):
            task.cancel()
        await asyncio.wait({feeding, waiting})
    if feeding.cancelled():
        return True
    feeding.result()  # the input's own failure, if any
    return False


async def run_local(opts: RunOptions) -> RunResult:
    """Run ``opts.spec`` on ``opts.input`` (see the module docstring)."""
    try:
        env_layer = any(k.startswith(ENV_PREFIX) for k in os.environ)  # F-080
        if opts.layers is None and opts.resolved_out is None and not env_layer:
            gd = compile_spec_file(opts.spec)
        else:
            effective = resolve_spec_file(opts.spec, tenant=opts.tenant_id,
                                          session=opts.session_id, layers=opts.layers)
            gd = effective.graph
            if opts.resolved_out is not None:
                opts.resolved_out.write_text(json.dumps(
                    effective.document(), indent=2, sort_keys=True, default=str) + "\n")
    except AssemblyError as exc:
        raise RunnerError(str(exc)) from None
    try:
        pcm, rate = read_wav(opts.input)
    except RSPPError as exc:
        raise RunnerError(f"{exc} (--input)") from None
    try:
        barge = read_wav(opts.barge_in) if opts.barge_in is not None else None
    except RSPPError as exc:
        raise RunnerError(f"{exc} (--barge-in)") from None
    barge_pcm = None
    if barge is not None:
        from rspp.providers.offline import resample_pcm

        barge_pcm = resample_pcm(barge[0], barge[1], rate)
    kept: list[msgspec.Struct] = []  # the latency table reads the session's own records
    assembly_opts = AssemblyOptions(
        session_id=opts.session_id, tenant_id=opts.tenant_id,
        authority_epoch=opts.authority_epoch,
        # wall-clock budgets are enforced in real time; reported otherwise
        enforce_budgets=opts.real_time, record_level=opts.record_level, timeline=opts.timeline,
        metrics_out=opts.metrics_out, trace_out=opts.trace_out, log_out=opts.log_out,
        telemetry=opts.telemetry, circuits=opts.circuits, file_source=True, debug=opts.debug,
        metrics_events=opts.metrics_events, redaction=opts.redaction,
        max_skew_ms=opts.max_skew_ms,
        record_tap=lambda rec: kept.append(rec) if len(kept) < _KEEP_RECORDS else None)
    holder: list[AssembledSession[LoopbackTransport]] = []
    loop_opts = LoopbackOptions(real_time=opts.real_time, barge_in=barge_pcm,
                                barge_in_after_s=opts.barge_in_after_s,
                                end_of_utterance_at_s=opts.end_of_utterance_at_s,
                                cancel_after_s=opts.cancel_after_s, commit_ms=gd.commit_ms,
                                at_media_s=_lease_hooks(opts, holder))
    try:
        assembled = assemble_session(
            gd, assembly_opts, lambda record: LoopbackTransport(pcm, rate, loop_opts,
                                                                record=record))
    except AssemblyError as exc:
        raise RunnerError(f"{opts.spec}: {exc}") from None
    holder.append(assembled)
    transport, driver, recorder = assembled.transport, assembled.driver, assembled.recorder
    interrupted: str | None = None
    transport.on_user_cancel = driver.user_cancel
    reporter: asyncio.Task[None] | None = None
    if opts.progress is not None:
        reporter = asyncio.create_task(
            _report_progress(opts.progress, opts.progress_interval_s, transport, driver,
                             total_s=len(pcm) / 2 / rate), name="run-progress")
    life = driver.session_lifecycle  # the session's states (F-138); a file has no
    try:                                 # connection, so no connection signals
        await assembled.start()
        life.apply(SessionEvent.CONNECTED, "file_input", emit=False)
        try:
            if await _feed(transport, opts.stop):
                active = driver.active_turn
                interrupted = (f"input at {transport.media_samples / rate:.2f} s of "
                               f"{len(pcm) / 2 / rate:.2f} s"
                               + (f", during turn {active.rsplit(':', 1)[-1]}" if active else ""))
                driver.end_session()  # the active turn ends abort(session_end), then close
        finally:
            life.apply(SessionEvent.DRAIN, "input_interrupted" if interrupted else "input_ended",
                       emit=False)
            await assembled.finish()
            life.apply(SessionEvent.END, "session_finished", emit=False)
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.wait({reporter})
    dead = assembled.dead_letters
    out_rate = transport.out_rate or rate
    if opts.output is not None:
        write_wav(opts.output, bytes(transport.played), out_rate)
    latency = {t.turn_id: t for t in turn_latencies(
        TimelineLine(line=i, kind=kind_of(r), record=msgspec.to_builtins(r))  # type: ignore[arg-type]
        for i, r in enumerate(kept))}
    turns = []
    for row in driver.summary():
        tid = row["turn_id"]
        tout = transport.turns.get(tid)
        lat = latency.get(tid)
        turns.append(TurnReport(
            turn_id=tid, terminal=row["terminal"], reason=row["reason"],
            transcript=tout.transcript if tout else "", reply=transport.reply_text_for(tid),
            degraded=bool(tout and tout.degraded),
            played_s=(tout.played_samples / out_rate) if tout else 0.0,
            turn_open_decision_ms=_f(lat.decision_ms if lat else None),
            speech_end_to_turn_open_ms=_f(lat.speech_end_to_open_ms if lat else None),
            speech_end_to_first_audio_ms=_f(lat.speech_end_to_first_audio_ms if lat else None),
            turn_open_to_first_audio_ms=_f(lat.open_to_first_audio_ms if lat else None),
            first_output_ms=_f(lat.open_to_first_output_ms if lat else None),
            cancel_fence_ms=row["cancel_fence_ms"],
            speech_end_source=lat.speech_end_source if lat else None,
            committed_s=(None if row["committed_samples"] is None
                         else row["committed_samples"] / out_rate),
        ))
    return RunResult(
        turns=turns, partials=transport.partials,
        output_seconds=len(transport.played) / 2 / out_rate,
        timeline_lines=recorder.stats.appended, after_fence_outputs=len(transport.after_fence),
        signals=transport.signals, diagnostics=driver.diagnostics, dead_letters=dead,
        interrupted=interrupted,
        session_states=(("CONNECTING",) if life.history else ()) + tuple(
            to.value for _, _, to in life.history),
        usage=assembled.usage_summary(),
    )
