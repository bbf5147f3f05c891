"""``rspp run SPEC --input IN.wav``: the offline assistant end to end on the loopback transport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

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


def run(
    spec: Path = typer.Argument(..., help="PipelineSpec YAML, e.g. pipelines/examples/"
                                "voice_assistant.yaml."),
    input: Path = typer.Option(..., "--input", "-i", help="16-bit PCM WAV with the user's speech."),
    output: Path | None = typer.Option(None, "--output", "-o", help="WAV file for the reply."),
    timeline: Path | None = typer.Option(None, "--timeline", help="JSON Lines timeline to write."),
    real_time: bool = typer.Option(False, "--real-time", help="Pace input frames in real time."),
    barge_in: str | None = typer.Option(
        None, "--barge-in", help="IN2.wav@SECONDS: user speech SECONDS after the first playback."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
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
) -> None:
    """Stream IN.wav through SPEC in 20 ms frames; print transcript, reply and latencies."""
    from rspp.runner import RunnerError, RunOptions, render_result, run_local

    bi_path, bi_after = None, 0.0
    if barge_in is not None:
        try:
            bi_path, bi_after = parse_barge_in(barge_in)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    for name, path in (("--output", output), ("--timeline", timeline),
                       ("--metrics-out", metrics_out), ("--trace-out", trace_out),
                       ("--log-out", log_out)):
        if path is not None and not path.parent.exists():
            typer.echo(f"error: {name} {path}: directory {path.parent} does not exist", err=True)
            raise typer.Exit(2)
    if output is not None and output.suffix.lower() != ".wav":
        typer.echo(f"error: --output {output}: must end in .wav", err=True)
        raise typer.Exit(2)
    from rspp.errors import RSPPError
    from rspp.runner._replayable import parse_record_level

    try:
        level = parse_record_level(record_level)
    except RSPPError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    opts = RunOptions(spec=spec, input=input, output=output, timeline=timeline, record_level=level,
                      real_time=real_time, barge_in=bi_path, barge_in_after_s=bi_after,
                      metrics_out=metrics_out, trace_out=trace_out, log_out=log_out)
    try:
        result = asyncio.run(run_local(opts))
    except RunnerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({
            "turns": [{"turn_id": t.turn_id, "terminal": t.terminal, "reason": t.reason,
                       "transcript": t.transcript, "reply": t.reply, "degraded": t.degraded,
                       "played_s": round(t.played_s, 3),
                       "turn_open_decision_ms": t.turn_open_decision_ms,
                       "first_output_ms": t.first_output_ms, "end_to_end_ms": t.end_to_end_ms,
                       "cancel_fence_ms": t.cancel_fence_ms} for t in result.turns],
            "output_seconds": round(result.output_seconds, 3),
            "after_fence_outputs": result.after_fence_outputs,
            "dead_letters": result.dead_letters,
        }))
    else:
        typer.echo(render_result(result))
        if output is not None:
            typer.echo(f"wrote {output}")
        for path in (timeline, metrics_out, trace_out, log_out):
            if path is not None:
                typer.echo(f"wrote {path}")
    if not result.turns:
        typer.echo("error: no speech turn was detected in the input", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``rspp run`` to the root app."""
    app.command("run")(run)
