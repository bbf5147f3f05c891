"""``rspp replay``: replay a recorded session and report divergences (OR-03, F-127).

Exit codes: 0 no failing divergence, 1 a failing divergence class is present
(CI gate), 2 bad input (missing/malformed timeline, spec problems, a recording
without the payloads the mode needs).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import msgspec
import typer

from rspp.cli._errors import fail, guard_commands
from rspp.cli._replay_jobs import SessionJob, auto_jobs, part_dir, run_jobs
from rspp.cli._replay_jobs import long_lived_heap as _long_lived_heap
from rspp.contracts import DivergenceClass, DivergencePolicy, ReplayMode, ReplayTolerances
from rspp.errors import RSPPError

if TYPE_CHECKING:
    from rspp.replay import ReplayCursor, ReplayEngine, ReplayResult
    from rspp.replay._compare_process import CompareProcess

__all__ = ["register"]

_MODES = {"playback": ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
          "resimulate": ReplayMode.RE_SIMULATE_NODES}
_DECISIONS = {"replay": ReplayMode.REPLAY_DECISIONS, "recompute": ReplayMode.RECOMPUTE_DECISIONS}
_COMPARE = ("auto", "process", "inline")


def _fail(message: str) -> typer.Exit:
    return fail(message)


def _find_spec(ref: str) -> Path | None:
    """A spec under ./pipelines whose name@version matches the recorded graph ref."""
    from rspp.spec import compile_spec, load_spec

    name_version = ref.partition("#")[0]
    root = Path("pipelines")
    if not root.is_dir():
        return None
    for path in sorted(root.rglob("*.y*ml")):
        try:
            gd = compile_spec(load_spec(path))
        except (RSPPError, ValueError, OSError):
            continue
        if f"{gd.name}@{gd.version}" == name_version:
            return path
    return None


def replay_command(
    file: Path = typer.Argument(..., help="Recorded timeline (JSON Lines or MessagePack)."),
    spec: Path | None = typer.Option(None, "--spec", help="PipelineSpec to replay against "
                                     "(default: the recorded pipeline, found under ./pipelines)."),
    mode: str = typer.Option("playback", "--mode", help="playback (recorded provider outputs) "
                             "or resimulate (run every node again)."),
    decisions: str = typer.Option("replay", "--decisions", help="replay (recorded admission "
                                  "decisions) or recompute."),
    report: Path | None = typer.Option(None, "--report", help="Write the divergence report "
                                       "JSON here."),
    timeline_out: Path | None = typer.Option(None, "--timeline-out", help="Write the replayed "
                                             "(candidate) timeline here as JSON Lines."),
    provider_type: list[str] = typer.Option([], "--provider-node-type", help="Node type whose "
                                            "outputs are provider outputs (repeatable; default "
                                            "stt, llm, tts)."),
    timing_ms: int = typer.Option(50, "--timing-ms", min=0, help="Timing tolerance (ms)."),
    max_timing: int | None = typer.Option(None, "--max-timing-findings", min=0, help="Fail when "
                                          "more TIMING findings than this (latency regression)."),
    real_time: bool = typer.Option(False, "--real-time", help="Pace the replay in real time "
                                   "(re-simulating thread/network providers such as the offline "
                                   "STT/TTS); virtual time by default."),
    pause_at: int | None = typer.Option(None, "--pause-at", min=0, help="Pause after this "
                                        "many recorded ingress events and save the cursor to "
                                        "--cursor-out (no report)."),
    cursor_out: Path | None = typer.Option(None, "--cursor-out", help="Where --pause-at saves "
                                           "the replay cursor (JSON)."),
    resume_from: Path | None = typer.Option(None, "--resume-from", help="Resume a paused "
                                            "replay from its saved cursor: the replay must "
                                            "reach the same boundary, then runs to the end."),
    jobs: int = typer.Option(1, "--jobs", min=0, help="Worker processes replaying the "
                             "sessions of a many-session timeline in parallel (output in "
                             "timeline order, as one process gives it; each worker is a "
                             "process of ~100 MB); 0: one per CPU for a timeline of 16 MB "
                             "or more; 1 (default): this process only."),
    compare: str = typer.Option("inline", "--compare", help="Where the candidate lines are "
                                "compared with the recording: inline (default: this process), "
                                "process (a second process fed by a pipe, reading the "
                                "recording itself; same report; ~40% more CPU in all and, "
                                "measured on an idle 2-core machine, no shorter wall time), "
                                "auto: process when this process may use 2 or more CPUs (its "
                                "affinity mask) and the 1-minute load average leaves one of "
                                "them idle, else inline. "
                                "Worker processes (--jobs above 1) compare inline."),
) -> None:
    """Replay a recorded session and print the divergence summary (exit 1 on failing classes)."""
    if mode not in _MODES:
        raise _fail(f"--mode {mode!r}: use one of {', '.join(_MODES)}")
    if decisions not in _DECISIONS:
        raise _fail(f"--decisions {decisions!r}: use one of {', '.join(_DECISIONS)}")
    if (pause_at is None) != (cursor_out is None):
        raise _fail("--pause-at and --cursor-out go together (pause there, save the cursor)")
    if pause_at is not None and resume_from is not None:
        raise _fail("--resume-from: resume a paused replay without --pause-at")
    if compare not in _COMPARE:
        raise _fail(f"--compare {compare!r}: use one of {', '.join(_COMPARE)}")
    # forked before the node implementations and the recording are loaded: the child
    # starts as a copy of this process (and reads the recording itself)
    with _compare_process(compare) as compare_proc:
        import rspp.nodes  # noqa: F401  (registers the built-in node types)
        from rspp.kernel import default_registry
        from rspp.replay import (
            DEFAULT_PROVIDER_NODE_TYPES,
            ReplayCursor,
            ReplayEngine,
            ReplayOptions,
            load_recording,
            replay_report_json,
            replay_summary_text,
            timeline_sessions,
        )
        from rspp.replay._loop import run_replay
        from rspp.runner import DEMO_NODES, DEMO_PROVIDER_TYPES, node_session
        from rspp.spec import SpecInvalid, compile_spec, load_spec
        cursor = None
        if resume_from is not None:
            try:
                cursor = ReplayCursor.load(resume_from)
            except RSPPError as exc:
                raise _fail(f"--resume-from {resume_from}: {exc}") from None
        # a many-session timeline replays session by session, each read from its own lines;
        # the file is read whole first (finding its sessions on the way) and again by span
        # only when it holds more than one
        recording = None
        try:
            recording = load_recording(file, stream=True)
            spans = list(recording.sessions)
        except RSPPError as exc:
            spans = timeline_sessions(file) if file.is_file() else []
            if len(spans) <= 1:
                raise _fail(str(exc)) from None
        many = len(spans) > 1
        if many and (pause_at is not None or cursor is not None):
            raise _fail(f"{file}: holds {len(spans)} sessions; a replay cursor addresses one "
                        "session's recording")
        if many or recording is None:
            if recording is not None:
                recording.close()
            try:
                recording = load_recording(file, stream=True, span=spans[0])
            except RSPPError as exc:
                raise _fail(str(exc)) from None
        if spec is None:
            refs = [str(ln.record.get("graph_definition_ref", "")) for ln in recording.lines
                    if ln.kind == "resolved_turn_plan"]
            found = _find_spec(refs[0]) if refs else None
            if found is None:
                recorded = refs[0].partition("#")[0] if refs else recording.pipeline_version
                raise _fail(f"{file}: the recording does not embed its spec ({recorded}); pass "
                            "--spec PATH (the recorded version, or a new version to compare)")
            spec = found
        from rspp.nodes import NodeCatalog  # custom `python:` node types resolve as in `rspp run`

        try:
            gd = compile_spec(load_spec(spec), catalog=NodeCatalog.for_spec(spec))
        except SpecInvalid as exc:
            raise _fail(f"--spec {spec}: {exc}") from None
        except (RSPPError, OSError) as exc:
            raise _fail(f"--spec {spec}: {exc}") from None
        if any(n.type.startswith("replay_demo.") for n in gd.nodes):
            for node_cls in DEMO_NODES:  # the demo pipeline of the replay docs and tests
                default_registry.register(node_cls)
        types = frozenset(provider_type) or (DEFAULT_PROVIDER_NODE_TYPES | DEMO_PROVIDER_TYPES)
        policy = DivergencePolicy(max_timing_findings=max_timing)
        out = None
        if timeline_out is not None:  # the candidate timeline is written as it is produced
            timeline_out.parent.mkdir(parents=True, exist_ok=True)
            out = timeline_out.open("wb")
        sink = None
        if out is not None:
            def sink(line: dict[str, object], f: IO[bytes] = out) -> None:
                f.write(msgspec.json.encode(line) + b"\n")
        opts = ReplayOptions(mode=_MODES[mode], decision_mode=_DECISIONS[decisions],
                             provider_node_types=types,
                             tolerances=ReplayTolerances(timing_ms=timing_ms), policy=policy,
                             real_time=real_time, lean=True, line_sink=sink,
                             compare_process=compare_proc)
        docs: list[dict[str, object]] = []
        failed = False
        workers = auto_jobs(jobs, len(spans) if many else 1, file.stat().st_size if many else 0)
        try:
            if workers > 1:  # the sessions in worker processes, taken back in order
                recording.close()
                if compare_proc is not None:  # (the workers compare inline)
                    compare_proc.close()
                parts = part_dir(timeline_out)
                batch = [SessionJob(file=str(file), span=span, spec=str(spec), mode=opts.mode,
                                    decision_mode=opts.decision_mode, provider_types=types,
                                    timing_ms=timing_ms, max_timing=max_timing,
                                    real_time=real_time,
                                    part=None if parts is None else f"{parts}/{k}.jsonl")
                         for k, span in enumerate(spans)]
                try:
                    for outcome in run_jobs(batch, workers, out, gd):
                        if outcome.error is not None:
                            raise _fail(outcome.error)
                        typer.echo(outcome.summary)
                        docs.append(outcome.doc or {})
                        failed = failed or outcome.failed
                finally:
                    if parts is not None:
                        shutil.rmtree(parts, ignore_errors=True)
            for k, span in enumerate([] if workers > 1 else spans if many else [None]):
                try:
                    if k > 0:
                        recording = load_recording(file, stream=True, span=span)
                    with _long_lived_heap():
                        engine = ReplayEngine(recording, gd, registry=default_registry,
                                              options=opts, session_factory=node_session)
                        if pause_at is not None and cursor_out is not None:
                            _pause(engine, pause_at, cursor_out, real_time=real_time)
                            return
                        result = run_replay(_finish(engine, cursor), real_time=real_time)
                except RSPPError as exc:
                    where = f"session {span.session_id}: " if span is not None else ""
                    raise _fail(f"{where}{exc}") from None
                finally:
                    recording.close()
                summary = replay_summary_text(result)
                typer.echo(f"session {span.session_id}: {summary}" if span is not None else summary)
                doc = replay_report_json(result, recording=str(file), spec=str(spec))
                docs.append({"session_id": span.session_id, **doc} if span is not None else doc)
                failing = [c for c in DivergenceClass if result.report.counts.get(c, 0)
                           and c in policy.fail_on]
                failed = failed or not result.report.passed or bool(failing)
        finally:
            if out is not None:
                out.close()
        if report is not None:
            report.parent.mkdir(parents=True, exist_ok=True)
            body = {"sessions": docs} if many else docs[0]
            report.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        if failed:
            raise typer.Exit(1)


@contextmanager
def _compare_process(choice: str) -> Iterator[CompareProcess | None]:
    """The comparison process ``--compare`` asks for (None: compare inline), closed after."""
    from rspp.replay._compare_process import CompareProcess, idle_core

    if choice == "inline" or (choice == "auto" and not idle_core()):
        yield None
        return
    with CompareProcess() as proc:
        yield proc


async def _finish(engine: ReplayEngine, cursor: ReplayCursor | None) -> ReplayResult:
    """Replay to the end; from ``cursor``'s boundary when given (checked to be the same)."""
    try:
        if cursor is not None:
            await engine.resume(cursor)
            typer.echo(f"resumed at ingress event {cursor.position}/{cursor.total} "
                       f"(seq={cursor.runtime_sequence} ms={cursor.runtime_ms} "
                       f"lines={cursor.lines})")
        return await engine.finish()
    finally:
        await engine.aclose()


def _pause(engine: ReplayEngine, position: int, out: Path, *, real_time: bool) -> None:
    """Replay the first ``position`` ingress events, then save the paused cursor to ``out``."""
    if position > engine.total:
        raise _fail(f"--pause-at {position}: the recording has {engine.total} ingress events")
    from rspp.replay._loop import run_replay

    async def go() -> ReplayCursor:
        try:
            await engine.start()
            await engine.step(position)
            return engine.pause()
        finally:
            await engine.aclose()

    cursor = run_replay(go(), real_time=real_time)
    out.parent.mkdir(parents=True, exist_ok=True)
    cursor.save(out)
    typer.echo(f"paused at ingress event {cursor.position}/{cursor.total} "
               f"(seq={cursor.runtime_sequence} ms={cursor.runtime_ms} lines={cursor.lines}); "
               f"cursor saved to {out}: resume with --resume-from {out}")


def register(app: typer.Typer) -> None:
    """Attach ``rspp replay`` to the root app."""
    app.command("replay")(replay_command)
    guard_commands(app)
