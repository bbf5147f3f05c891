"""Barge-in stop through real sessions, idle and with 200 concurrent sessions.

Every session is what ``rspp run --real-time`` assembles (SessionActor, built-in VAD /
STT / LLM / segmenter / TTS nodes, turn driver, cancel scopes, recorder) around the
loopback transport streaming 20 ms frames in real time; only the providers are mocks
(``_real_session.py``). Each session asks a (tone) question; 0.3 s into the reply a
barge-in (tone) is mixed into the input. Stop latency = wall time from the first input
frame carrying barge-in speech (speech onset) to the last reply frame of the
interrupted turn delivered or its playback stopped, whichever is later.
``chunks_after_fence`` counts reply frames of a cancelled turn the transport got after
the turn's fence. Targets: stop p99 <= 40 ms at 200 sessions, 0 chunks after fence.

Usage: ``python benchmarks/cancel_fence.py [--quick] [--sessions 200]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, percentile, quick_parser
from _real_session import SessionResult, run_many


def _stops(results: list[SessionResult]) -> list[float]:
    return [r.stop_ms for r in results if r.stop_ms is not None]


def main() -> None:
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", type=int, default=200, help="concurrent sessions (loaded)")
    args = ap.parse_args()
    idle_runs = 3 if args.quick else 10
    idle: list[SessionResult] = []
    for _ in range(idle_runs):  # one session at a time
        idle += asyncio.run(run_many(1, barge_in=True, stagger_s=0.0))
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    loaded = asyncio.run(run_many(args.sessions, barge_in=True, stagger_s=1.0))
    wall = time.monotonic() - wall0
    cores = (cpu_seconds() - cpu0) / wall  # < 1: the machine gave this process less
    for name, rs in (("idle (1 session)", idle), (f"loaded ({args.sessions} sessions)", loaded)):
        st = _stops(rs)
        print(f"{name:24s} barge-ins={len(st):4d}/{len(rs)} stop p50={percentile(st, 50):.1f} ms "
              f"p99={percentile(st, 99):.1f} ms max={max(st, default=0.0):.1f} ms "
              f"after_fence={sum(r.chunks_after_fence for r in rs)}", flush=True)
    si, sl = _stops(idle), _stops(loaded)
    emit({
        "benchmark": "cancel_fence",
        "stop_p50_ms": round(percentile(si, 50), 2),
        "stop_p99_ms": round(percentile(si, 99), 2),
        "stop_p50_ms_loaded": round(percentile(sl, 50), 2),
        "stop_p99_ms_loaded": round(percentile(sl, 99), 2),
        "chunks_after_fence": sum(r.chunks_after_fence for r in idle + loaded),
        "barge_ins_measured": [len(si), len(sl)],
        "sessions_loaded": args.sessions,
        "load_average": round(os.getloadavg()[0], 2),
        "loaded_cpu_cores": round(cores, 2),
        "loaded_wall_s": round(wall, 1),
        "targets": {"stop_p99_ms_loaded": 40.0, "chunks_after_fence": 0},
    })


if __name__ == "__main__":
    main()
