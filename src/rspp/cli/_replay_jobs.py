"""``rspp replay`` of a many-session timeline in worker processes (issue 12).

Each session of a many-session timeline is replayed from its own span of lines, with
nothing shared between sessions, so sessions can run in parallel: one job per session
goes to a pool of worker processes, and the parent takes the results back in the
timeline's order, printing each summary, appending each session's candidate lines
(written by its worker to a part file) to ``--timeline-out`` and collecting the report
entries exactly as a replay session by session in one process does. A session that
fails (bad input) stops the replay at that session, as in one process: the sessions
before it are printed and written, its own candidate lines so far are written, the
ones after it are discarded.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import IO, Any

import msgspec

from rspp.contracts import DivergenceClass, DivergencePolicy, ReplayMode, ReplayTolerances
from rspp.errors import RSPPError

__all__ = ["SessionJob", "SessionOutcome", "auto_jobs", "long_lived_heap", "part_dir",
           "run_jobs"]

#: a many-session timeline smaller than this replays in one process by default (a
#: worker's start-up, about a second of imports, is not worth it below)
AUTO_MIN_BYTES = 16_000_000


@contextmanager
def long_lived_heap() -> Iterator[None]:
    """Cheaper garbage collection while a long recording replays: what exists before the
    replay (modules, the recording's index) is frozen out of the collector's scans, and
    collections run less often (a replay allocates short-lived objects per 20 ms frame,
    few cycles); both are restored afterwards."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def auto_jobs(jobs: int, sessions: int, size: int) -> int:
    """Worker processes for ``sessions`` sessions in ``size`` bytes (``jobs`` 0: as many
    as the CPUs this process may use, for a timeline of at least :data:`AUTO_MIN_BYTES`);
    1 means: replay in this process."""
    if sessions < 2:
        return 1
    if jobs == 0:
        if size < AUTO_MIN_BYTES:
            return 1
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return max(1, min(jobs, sessions))


@dataclass(frozen=True, slots=True)
class SessionJob:
    """What a worker needs to replay one session (plain, picklable values)."""

    file: str
    span: Any  # rspp.replay.SessionSpan
    spec: str
    mode: ReplayMode
    decision_mode: ReplayMode
    provider_types: frozenset[str]
    timing_ms: int
    max_timing: int | None
    real_time: bool
    part: str | None  # where the worker writes this session's candidate lines


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """One session's summary line, report entry and gate verdict, or its error."""

    summary: str = ""
    doc: dict[str, Any] | None = None
    failed: bool = False
    error: str | None = None


def _replay_one(recording: Any, gd: Any, opts: Any, *, file: str, spec: str,
                span: Any) -> SessionOutcome:
    """Replay one (opened) session to the end, as ``rspp replay`` does in one process:
    its summary, report entry and verdict. Raises :class:`RSPPError` for bad input."""
    from rspp.kernel import default_registry
    from rspp.replay import ReplayEngine, replay_report_json, replay_summary_text
    from rspp.replay._loop import run_replay
    from rspp.runner import node_session

    async def finish() -> Any:
        try:
            return await engine.finish()
        finally:
            await engine.aclose()

    try:
        with long_lived_heap():
            engine = ReplayEngine(recording, gd, registry=default_registry, options=opts,
                                  session_factory=node_session)
            result = run_replay(finish(), real_time=opts.real_time)
    finally:
        recording.close()
    summary = replay_summary_text(result)
    doc = replay_report_json(result, recording=file, spec=spec)
    failing = [c for c in DivergenceClass if result.report.counts.get(c, 0)
               and c in opts.policy.fail_on]
    return SessionOutcome(summary=f"session {span.session_id}: {summary}",
                          doc={"session_id": span.session_id, **doc},
                          failed=not result.report.passed or bool(failing))


#: compiled specs by path: set by the parent before its workers fork (they inherit it),
#: filled by a worker that was spawned
_GRAPHS: dict[str, Any] = {}


def _graph(spec: str) -> Any:
    """The compiled spec at ``spec``, compiled once per process (with the demo node types
    registered when it uses them, as the parent did)."""
    gd = _GRAPHS.get(spec)
    if gd is None:
        import rspp.nodes  # noqa: F401  (registers the built-in node types)
        from rspp.kernel import default_registry
        from rspp.nodes import NodeCatalog
        from rspp.runner import DEMO_NODES
        from rspp.spec import compile_spec, load_spec

        gd = _GRAPHS[spec] = compile_spec(load_spec(Path(spec)),
                                          catalog=NodeCatalog.for_spec(Path(spec)))
        if any(n.type.startswith("replay_demo.") for n in gd.nodes):
            for node_cls in DEMO_NODES:
                default_registry.register(node_cls)
    return gd


def _work(job: SessionJob) -> SessionOutcome:
    """A worker: open the session's span and replay it."""
    from rspp.replay import ReplayOptions, load_recording

    where = f"session {job.span.session_id}: "
    out: IO[bytes] | None = None
    try:
        gd = _graph(job.spec)
        sink = None
        if job.part is not None:
            out = open(job.part, "wb")  # closed below, after the replay

            def sink(line: dict[str, object], f: IO[bytes] = out) -> None:
                f.write(msgspec.json.encode(line) + b"\n")
        opts = ReplayOptions(mode=job.mode, decision_mode=job.decision_mode,
                             provider_node_types=job.provider_types,
                             tolerances=ReplayTolerances(timing_ms=job.timing_ms),
                             policy=DivergencePolicy(max_timing_findings=job.max_timing),
                             real_time=job.real_time, lean=True, line_sink=sink)
        recording = load_recording(job.file, stream=True, span=job.span)
        return _replay_one(recording, gd, opts, file=job.file, spec=job.spec, span=job.span)
    except RSPPError as exc:
        return SessionOutcome(error=f"{where}{exc}")
    finally:
        if out is not None:
            out.close()


def run_jobs(jobs: list[SessionJob], workers: int, out: IO[bytes] | None, graph: Any,
             ) -> Iterator[SessionOutcome]:
    """Replay ``jobs`` (all of one spec, compiled: ``graph``) in ``workers`` processes;
    yields their outcomes in job order, each after its candidate lines were appended to
    ``out``. Stops after an outcome with an error (the sessions after it are cancelled or
    discarded). Workers are forked where the platform can (they start with this
    process's modules and the compiled spec: no start-up work), else spawned."""
    for job in jobs:
        _GRAPHS[job.spec] = graph
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context(method)) as pool:
        futures: list[Future[SessionOutcome]] = [pool.submit(_work, job) for job in jobs]
        try:
            for job, future in zip(jobs, futures, strict=True):
                outcome = future.result()
                if out is not None and job.part is not None and os.path.exists(job.part):
                    with open(job.part, "rb") as part:
                        shutil.copyfileobj(part, out)
                    os.unlink(job.part)
                yield outcome
                if outcome.error is not None:
                    return
        finally:
            for future in futures:
                future.cancel()


def part_dir(timeline_out: Path | None) -> str | None:
    """A directory for the workers' part files, next to ``--timeline-out`` (None: no
    timeline is written)."""
    if timeline_out is None:
        return None
    return tempfile.mkdtemp(prefix=".rspp-replay-", dir=timeline_out.parent)
