"""What one session's debug capture (F-076) costs the unrelated sessions of its runtime.

``--sessions`` unrelated real-time sessions plus one target session run at once in this
process, each assembled as ``rspp serve`` assembles a live session
(:func:`rspp.runner._assembly.assemble_session`, the real nodes, turn driver and
recorder, every session writing its timeline as ``rspp serve --timeline-dir`` does; the
mock providers of ``_real_session.py``): a tone question, the reply, silence. Two
phases, alternated ``--reps`` times so machine load drifts over both alike:

* ``baseline``: the target session runs like the others;
* ``capture``: the target session turns its debug capture on as it starts (what the
  WebSocket ``{"type": "debug", "seconds": S}`` message does: the kernel emits debug
  records for every event of that session, its recorder writes them).

Measured per phase (medians over the reps): the process CPU per session-second of media
(``cpu_ms_per_session_s``: the runtime's cost, which unrelated sessions share), the
unrelated sessions' turn-open latency (end of utterance -> turn open, p95: what a busy
scheduler delays first) and the event loop's lateness waking a 5 ms timer (p99: the
lateness every session on the loop sees). ``overhead`` compares capture to baseline;
``within_thresholds`` holds it against the configured thresholds
(``--max-cpu-overhead-pct``, default 10; ``--max-lateness-overhead-ms``, default 5), and
the exit status is 1 when they are exceeded.

Usage: ``python benchmarks/debug_capture.py [--quick | --smoke] [--sessions 20] [--reps 3]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_session as rs
from _common import cpu_seconds, emit, percentile

from rspp.runner._assembly import AssemblyOptions, assemble_session
from rspp.spec import GraphDefinition
from rspp.transports import LoopbackOptions

QUESTION_S, TAIL_S, TAIL_SILENCE_MS = 0.6, 2.4, 400
MEDIA_S = 0.2 + QUESTION_S + TAIL_S + TAIL_SILENCE_MS / 1000


async def _session(gd: GraphDefinition, sid: str, timelines: Path, *, capture: bool,
                   start_delay_s: float) -> tuple[list[float], int]:
    """One real-time session; (its turn-open latencies in ms, debug records it kept)."""
    await asyncio.sleep(start_delay_s)
    pcm = rs.silence(0.2) + rs.tone(QUESTION_S) + rs.silence(TAIL_S)
    opts = LoopbackOptions(real_time=True, tail_silence_ms=TAIL_SILENCE_MS, max_drain_s=5.0)
    assembled = assemble_session(
        gd, AssemblyOptions(session_id=sid, enforce_budgets=True,
                            timeline=timelines / f"{sid}.jsonl"),
        lambda record: rs.TimedLoopback(pcm, rs.RATE, opts, record=record))
    await assembled.start()
    if capture:
        assembled.capture_debug(600.0)
    try:
        await assembled.transport.run()
    finally:
        await assembled.finish()
    opened = [(t.open_ns - t.eou_ns) / 1e6 for t in assembled.driver.timings.values()
              if t.open_ns is not None]
    return opened, assembled.recorder.stats.debug_events


async def _loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late the loop wakes a 5 ms timer (ms), until ``stop``."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + 0.005
        await asyncio.sleep(0.005)
        out.append(max(0.0, (loop.time() - due) * 1000))


async def _phase(gd: GraphDefinition, n: int, *, capture: bool, tag: str) -> dict[str, Any]:
    lags: list[float] = []
    stop = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="rspp-debug-bench-") as d:
        lagger = asyncio.create_task(_loop_lag(stop, lags))
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        results = await asyncio.gather(
            _session(gd, f"{tag}-target", Path(d), capture=capture, start_delay_s=0.0),
            *(_session(gd, f"{tag}-u{i}", Path(d), capture=False, start_delay_s=0.5 * i / n)
              for i in range(n)))
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        stop.set()
        await lagger
    (_, debug_records), unrelated = results[0], results[1:]
    opened = [ms for ms_list, _ in unrelated for ms in ms_list]
    return {"cpu_ms_per_session_s": 1000 * cpu / ((n + 1) * MEDIA_S),
            "turn_open_p95_ms": percentile(opened, 95) if opened else 0.0,
            "loop_lag_p99_ms": percentile(lags, 99) if lags else 0.0,
            "unrelated_turns": len(opened), "target_debug_records": debug_records,
            "wall_s": wall}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main() -> None:
    ap = rs.smoke_parser(__doc__)
    ap.add_argument("--sessions", type=int, default=20, help="unrelated concurrent sessions")
    ap.add_argument("--reps", type=int, default=3, help="alternations of the two phases")
    ap.add_argument("--max-cpu-overhead-pct", type=float, default=10.0)
    ap.add_argument("--max-lateness-overhead-ms", type=float, default=5.0)
    args = ap.parse_args()
    n, reps = (1, 1) if args.smoke else (6, 2) if args.quick else (args.sessions, args.reps)
    gd = rs.graph()

    async def run() -> dict[str, list[dict[str, Any]]]:
        if not args.smoke:  # imports, caches, first-use costs
            await _phase(gd, 1, capture=True, tag="warm")
        out: dict[str, list[dict[str, Any]]] = {"baseline": [], "capture": []}
        for rep in range(reps):
            for name in ("baseline", "capture") if rep % 2 == 0 else ("capture", "baseline"):
                out[name].append(await _phase(gd, n, capture=name == "capture",
                                              tag=f"{name}{rep}"))
        return out

    runs = asyncio.run(run())
    phases = {name: {k: _median(rs_, k) for k in ("cpu_ms_per_session_s", "turn_open_p95_ms",
                                                  "loop_lag_p99_ms", "target_debug_records")}
              for name, rs_ in runs.items()}
    base, cap = phases["baseline"], phases["capture"]
    cpu_pct = 100 * (cap["cpu_ms_per_session_s"] - base["cpu_ms_per_session_s"]) / max(
        base["cpu_ms_per_session_s"], 1e-9)
    turn_ms = cap["turn_open_p95_ms"] - base["turn_open_p95_ms"]
    lag_ms = cap["loop_lag_p99_ms"] - base["loop_lag_p99_ms"]
    within = (cpu_pct <= args.max_cpu_overhead_pct
              and max(turn_ms, lag_ms) <= args.max_lateness_overhead_ms)
    emit({"benchmark": "debug_capture", "unrelated_sessions": n, "reps": reps,
          "baseline": base, "capture": cap,
          "cpu_ms_per_session_s_runs": {name: [round(r["cpu_ms_per_session_s"], 2)
                                               for r in rs_] for name, rs_ in runs.items()},
          "overhead": {"cpu_pct": round(cpu_pct, 2), "turn_open_p95_ms": round(turn_ms, 2),
                       "loop_lag_p99_ms": round(lag_ms, 2)},
          "thresholds": {"cpu_pct": args.max_cpu_overhead_pct,
                         "lateness_ms": args.max_lateness_overhead_ms},
          "within_thresholds": within})
    if not within and not args.smoke:  # (a smoke run measures nothing)
        sys.exit(1)


if __name__ == "__main__":
    main()
