"""CPU per session-second of one real session (``_real_session.py``), a CPU-time measure.

Each session is what ``rspp run`` assembles around the loopback transport, with the
mock providers of ``_real_session.py`` and the cancel_fence input (a tone question,
a reply, a barge-in 0.3 s into it). Two measures, both process CPU time (user +
system), so a loaded machine slows them down less than wall-clock ones:

* ``offline``: sessions one after another, frames as fast as the session takes them
  (``real_time=False``); CPU ms per second of input media (median of 5 repetitions);
* ``real_time``: ``--sessions`` sessions at once in real time (started within 1 s);
  CPU ms per session per second of input media (0.2 + 0.6 + 3.0 s + 0.4 s tail).

Usage: ``python benchmarks/session_cpu.py [--quick | --smoke] [--sessions 40]``; JSON last
line.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _real_session as rs
from _common import cpu_seconds, emit

from rspp.runner._assembly import AssemblyOptions, assemble_session
from rspp.spec import GraphDefinition
from rspp.transports import LoopbackOptions

MEDIA_S = 0.2 + 0.6 + 3.0 + 0.4  # run_session's input and tail silence


async def offline_session(gd: GraphDefinition, sid: str) -> float:
    """One session as fast as it runs; returns its input media seconds."""
    pcm = rs.silence(0.2) + rs.tone(0.6) + rs.silence(3.0)
    opts = LoopbackOptions(real_time=False, barge_in=rs.tone(0.4, 330.0), barge_in_after_s=0.3,
                           tail_silence_ms=400, max_drain_s=5.0)
    assembled = assemble_session(
        gd, AssemblyOptions(session_id=sid, enforce_budgets=True),
        lambda record: rs.TimedLoopback(pcm, rs.RATE, opts, record=record))
    await assembled.start()
    try:
        await assembled.transport.run()
    finally:
        await assembled.finish()
    return float(assembled.transport.media_samples / rs.RATE)


async def offline(sessions: int, reps: int) -> list[float]:
    gd = rs.graph()
    await offline_session(gd, "warm-up")
    out = []
    for rep in range(reps):
        cpu0, media = cpu_seconds(), 0.0
        for i in range(sessions):
            media += await offline_session(gd, f"s{rep}-{i}")
        out.append(1000 * (cpu_seconds() - cpu0) / media)
    return out


def main() -> None:
    ap = rs.smoke_parser(__doc__)
    ap.add_argument("--sessions", type=int, default=40, help="concurrent real-time sessions")
    args = ap.parse_args()
    sessions = 1 if args.smoke else args.sessions
    per = asyncio.run(offline(1 if args.smoke else 4 if args.quick else 10,
                              1 if args.smoke else 5))
    if not args.smoke:
        asyncio.run(rs.run_many(1, barge_in=True, stagger_s=0.0))  # warm-up
    cpu0 = cpu_seconds()
    res = asyncio.run(rs.run_many(sessions, barge_in=True, stagger_s=1.0))
    rt = 1000 * (cpu_seconds() - cpu0) / (sessions * MEDIA_S)
    emit({"benchmark": "session_cpu",
          "offline_cpu_ms_per_media_s": round(statistics.median(per), 2),
          "offline_runs": [round(x, 2) for x in per],
          "real_time_sessions": sessions,
          "real_time_cpu_ms_per_session_s": round(rt, 2),
          "barge_ins_measured": sum(r.stop_ms is not None for r in res),
          "sessions_per_core_estimate": int(1000 / rt)})


if __name__ == "__main__":
    main()
