"""The local runner (F-125): one spec, one loopback session, every runtime guarantee on.

:func:`run_local` compiles the spec, starts an in-process control plane
(static snapshot source, local admission, an authority lease), a session with
the built-in nodes and the turn driver, streams the input WAV through the
loopback transport, and returns per-turn transcripts, replies and latencies.
The timeline (JSON Lines) is exported asynchronously while the session runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rspp.contracts import RecordingLevel
from rspp.errors import RSPPError
from rspp.runner._assembly import (
    AssemblyError,
    AssemblyOptions,
    assemble_session,
    compile_spec_file,
)
from rspp.runner._bundle import LOCAL_TENANT
from rspp.runner._telemetry import TelemetryTargets
from rspp.transports import LoopbackOptions, LoopbackTransport, read_wav, write_wav

__all__ = ["RunOptions", "RunResult", "RunnerError", "TurnReport", "run_local"]


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


async def run_local(opts: RunOptions) -> RunResult:
    """Run ``opts.spec`` on ``opts.input`` (see the module docstring)."""
    try:
        gd = compile_spec_file(opts.spec)
    except AssemblyError as exc:
        raise RunnerError(str(exc)) from None
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
    assembly_opts = AssemblyOptions(
        session_id=opts.session_id, tenant_id=opts.tenant_id,
        authority_epoch=opts.authority_epoch,
        # wall-clock budgets are enforced in real time; reported otherwise
        enforce_budgets=opts.real_time, record_level=opts.record_level, timeline=opts.timeline,
        metrics_out=opts.metrics_out, trace_out=opts.trace_out, log_out=opts.log_out,
        telemetry=opts.telemetry)
    loop_opts = LoopbackOptions(real_time=opts.real_time, barge_in=barge_pcm,
                                barge_in_after_s=opts.barge_in_after_s,
                                end_of_utterance_at_s=opts.end_of_utterance_at_s)
    try:
        assembled = assemble_session(
            gd, assembly_opts, lambda record: LoopbackTransport(pcm, rate, loop_opts,
                                                                record=record))
    except AssemblyError as exc:
        raise RunnerError(str(exc)) from None
    transport, driver, recorder = assembled.transport, assembled.driver, assembled.recorder
    await assembled.start()
    try:
        await transport.run()
    finally:
        await assembled.finish()
    dead = assembled.dead_letters
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
