"""``rspp run SPEC --input IN.wav``: the offline assistant end to end on the loopback transport."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import typer

from rspp.cli._errors import INTERRUPTED, fail, guard_commands, scrub

__all__ = ["parse_barge_in", "register", "run"]


def parse_barge_in(value: str) -> tuple[Path, float]:
    """``IN2.wav@SECONDS`` -> (path, seconds); raises ValueError with a fix hint."""
    path, sep, seconds = value.rpartition("@")
    if not sep or not path:
        raise ValueError(f"--barge-in {value!r}: expected IN2.wav@SECONDS, e.g. stop.wav@0.5")
    try:
        after = float(seconds)
    except ValueError:
        raise ValueError(
            f"--barge-in {value!r}: SECONDS {seconds!r} is not a number; e.g. stop.wav@0.5"
        ) from None
    if after < 0:
        raise ValueError(f"--barge-in {value!r}: SECONDS must be >= 0")
    return Path(path), after


def echo(text: str) -> None:
    """Print ``text`` with every resolved secret value scrubbed."""
    typer.echo(scrub(text))


async def _interruptible(run_local: Callable[[Any], Awaitable[Any]], opts: Any) -> Any:
    """``run_local(opts)`` where the first Ctrl-C stops the run gracefully (``opts.stop``).

    The session ends its active turn, closes and writes what it produced; a second
    Ctrl-C falls back to the default handler (immediate exit).
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_sigint() -> None:
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)

    try:
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    except (NotImplementedError, RuntimeError):  # no signal support here (e.g. not main thread)
        return await run_local(opts)
    try:
        return await run_local(dataclasses.replace(opts, stop=stop))
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def run(
    spec: Path = typer.Argument(..., help="PipelineSpec YAML, e.g. pipelines/examples/"
                                "voice_assistant.yaml."),
    input: Path = typer.Option(..., "--input", "-i", help="16-bit PCM WAV with the user's speech."),
    output: Path | None = typer.Option(None, "--output", "-o", help="WAV file for the reply."),
    timeline: Path | None = typer.Option(None, "--timeline", help="JSON Lines timeline to write."),
    real_time: bool = typer.Option(
        False, "--real-time", help="Pace input frames in real time; on a terminal a live view "
        "shows the input position, the turn state and the transcript as it arrives."),
    barge_in: str | None = typer.Option(
        None, "--barge-in", help="IN2.wav@SECONDS: user speech SECONDS after the first playback."),
    cancel_after: float | None = typer.Option(
        None, "--cancel-after", min=0.0, help="SECONDS: the user cancels the reply (like the "
        "WebSocket `interrupt`) SECONDS of media time after the first playback starts."),
    end_of_utterance: list[float] = typer.Option(
        [], "--end-of-utterance-at", min=0.0, help="SECONDS of input: the client signals end "
        "of utterance there (push-to-talk release), ending the speech without waiting for the "
        "VAD's silence; repeatable."),
    tenant: str | None = typer.Option(
        None, "--tenant", help="The session's tenant (its layers apply with --layers)."),
    layers: Path | None = typer.Option(
        None, "--layers", help="Configuration layers {tenants: {ID: {KEY: VALUE}}, sessions: "
        "{ID: ...}} applied to the spec for this run's tenant and session (`insert.NODE` "
        "inserts a node, `providers.MODALITY.primary` picks a provider; `rspp spec resolve` "
        "shows the result)."),
    resolved_out: Path | None = typer.Option(
        None, "--resolved-out", help="Write this session's resolved spec here (JSON: graph "
        "with inserted nodes, chosen providers, value sources, session id)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    debug: bool = typer.Option(
        False, "--debug", help="Record the kernel's debug events (TelemetryLane `debug`, one "
        "per control command) in the timeline; off by default."),
    max_skew_ms: int = typer.Option(
        250, "--max-skew-ms", min=0, max=3_600_000,
        help="Wall-clock skew the session tolerates before it corrects its wall stamps "
        "(recorded as a `clock_skew` note, NF-018; see docs/time.md)."),
    metrics_events: bool = typer.Option(
        False, "--metrics-events", help="Record in-band metrics events in the timeline "
        "(TelemetryLane `metric` records with their values): each node's latency and each "
        "edge's queue depth at every turn's end and at the end of the session."),
    record_level: str | None = typer.Option(
        None, "--record-level", help="Timeline recording level L0/L1/L2 (default: the plan's); "
        "L2 keeps audio and provider outputs so `rspp replay` can re-run the timeline."),
    metrics_out: Path | None = typer.Option(
        None, "--metrics-out", help="Write the OpenMetrics exposition (turn ids as exemplars) "
        "here at the end."),
    trace_out: Path | None = typer.Option(
        None, "--trace-out", help="Write finished OpenTelemetry spans here (JSON Lines)."),
    log_out: Path | None = typer.Option(
        None, "--log-out", help="Write JSON log lines with correlation ids here."),
    redact: list[str] = typer.Option(
        [], "--redact", help="NAME=REGEX: also redact this pattern from text in the timeline "
        "and the logs (as [REDACTED:NAME]; the built-in PII rules always apply); repeatable."),
    redact_audio: bool = typer.Option(
        False, "--redact-audio", help="Mask audio payloads in the timeline (zeroed, same "
        "length: timing and sizes unchanged)."),
    redaction_audit: Path | None = typer.Option(
        None, "--redaction-audit", help="Write every redaction action (record, rules) and "
        "the counts per rule here (JSON Lines) when the session ends."),
    kernel_budget_us: float | None = typer.Option(
        None, "--kernel-overhead-budget-us", min=0.0, help="Kernel overhead budget per "
        "event (microseconds): telemetry samples over it count in "
        "rspp_kernel_overhead_budget_exceeded_total and each crossing logs a WARNING."),
    revoke_at: float | None = typer.Option(
        None, "--revoke-at", min=0.0, help="Test hook: revoke the session's lease when the "
        "input reaches SECONDS (the turn then ends deauthorized_drain, later turns are refused)."),
    rotate_at: float | None = typer.Option(
        None, "--rotate-at", min=0.0, help="Test hook: rotate the lease to the next epoch at "
        "SECONDS of input (the turn ends deauthorized_drain, the next turn opens at the new "
        "epoch)."),
) -> None:
    """Stream IN.wav through SPEC in 20 ms frames; print transcript, reply and latencies."""
    from rspp.runner import RunnerError, RunOptions, TelemetryTargets, render_result, run_local

    bi_path, bi_after = None, 0.0
    if barge_in is not None:
        try:
            bi_path, bi_after = parse_barge_in(barge_in)
        except ValueError as exc:
            raise fail(str(exc)) from None
    for name, path in (("--output", output), ("--timeline", timeline),
                       ("--metrics-out", metrics_out), ("--trace-out", trace_out),
                       ("--log-out", log_out), ("--resolved-out", resolved_out),
                       ("--redaction-audit", redaction_audit)):
        if path is not None and not path.parent.exists():
            raise fail(f"{path}: {name}: directory {path.parent} does not exist")
    if output is not None and output.suffix.lower() != ".wav":
        raise fail(f"{output}: --output: must end in .wav")
    from rspp.errors import RSPPError
    from rspp.runner._replayable import parse_record_level

    try:
        level = parse_record_level(record_level)
    except RSPPError as exc:
        raise fail(f"--record-level: {exc}") from None
    from rspp.observability import RedactionConfig, parse_rule

    try:
        redaction = RedactionConfig(
            rules=tuple(parse_rule(r) for r in redact), mask_audio=redact_audio,
            audit_path=str(redaction_audit) if redaction_audit is not None else None)
    except ValueError as exc:
        raise fail(str(exc)) from None
    from rspp.cli._progress import LiveProgress

    # progress only for a person watching: real time, a terminal, not --json
    live = LiveProgress() if real_time and not as_json else None
    opts = RunOptions(spec=spec, input=input, output=output, timeline=timeline, record_level=level,
                      real_time=real_time, barge_in=bi_path, barge_in_after_s=bi_after,
                      metrics_out=metrics_out, trace_out=trace_out, log_out=log_out,
                      cancel_after_s=cancel_after, debug=debug,
                      metrics_events=metrics_events, redaction=redaction,
                      max_skew_ms=max_skew_ms,
                      end_of_utterance_at_s=tuple(sorted(end_of_utterance)),
                      layers=layers, resolved_out=resolved_out,
                      telemetry=None if kernel_budget_us is None else TelemetryTargets(
                          kernel_overhead_budget_s=kernel_budget_us / 1e6),
                      revoke_at_s=revoke_at, rotate_at_s=rotate_at,
                      progress=live.update if live is not None and live.enabled else None)
    if tenant is not None:
        opts = dataclasses.replace(opts, tenant_id=tenant)
    try:
        if live is not None:
            with live:
                result = asyncio.run(_interruptible(run_local, opts))
        else:
            result = asyncio.run(_interruptible(run_local, opts))
    except RunnerError as exc:
        raise fail(str(exc)) from None
    if as_json:
        echo(json.dumps({
            "turns": [{"turn_id": t.turn_id, "terminal": t.terminal, "reason": t.reason,
                       "transcript": t.transcript, "reply": t.reply, "degraded": t.degraded,
                       "played_s": round(t.played_s, 3),
                       "turn_open_decision_ms": t.turn_open_decision_ms,
                       "speech_end_to_turn_open_ms": t.speech_end_to_turn_open_ms,
                       "speech_end_to_first_audio_ms": t.speech_end_to_first_audio_ms,
                       "turn_open_to_first_audio_ms": t.turn_open_to_first_audio_ms,
                       "first_output_ms": t.first_output_ms,
                       "cancel_fence_ms": t.cancel_fence_ms, "committed_s": t.committed_s,
                       "speech_end_source": t.speech_end_source} for t in result.turns],
            "output_seconds": round(result.output_seconds, 3),
            "after_fence_outputs": result.after_fence_outputs,
            "dead_letters": result.dead_letters,
            "interrupted": result.interrupted,
            "session_states": list(result.session_states),
            "summary": msgspec.to_builtins(result.usage),
        }))
    else:
        echo(render_result(result))
        if output is not None:
            echo(f"wrote {output}")
        for path in (timeline, metrics_out, trace_out, log_out):
            if path is not None:
                echo(f"wrote {path}")
    if result.interrupted is not None:
        written = [f"{output} ({result.output_seconds:.2f} s of reply)"] if output else []
        written += [f"{path}" for path in (timeline, metrics_out, trace_out, log_out) if path]
        raise fail(f"{spec}: interrupted: Ctrl-C stopped the run ({result.interrupted}); "
                   + (f"wrote {', '.join(written)} (closed)" if written else "nothing to write"),
                   code=INTERRUPTED)
    if not result.turns:
        typer.echo("error: no speech turn was detected in the input", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``rspp run`` to the root app."""
    app.command("run")(run)
    guard_commands(app)
