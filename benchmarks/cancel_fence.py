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

This is the in-process stress figure (hand-assembled sessions, no sockets, 200 at once).
The served path under load (``rspp serve``, WebSocket clients speaking over the reply,
timelines gated by ``rspp slo report --spec`` on ``slo.cancel_fence_p95_ms``/``p99_ms``)
is ``benchmarks/served_slo.py --scenario barge-in``.

Usage: ``python benchmarks/cancel_fence.py [--quick | --smoke] [--sessions 200]``; JSON last line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile
from _real_session import SessionResult, measure


def _stops(results: list[SessionResult]) -> list[float]:
    return [r.stop_ms for r in results if r.stop_ms is not None]


def main() -> None:
    m = measure(__doc__)
    idle, loaded, cores, wall = m.idle, m.loaded, m.cores, m.wall_s
    for name, rs in (("idle (1 session)", idle), (f"loaded ({m.sessions} sessions)", loaded)):
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
        "sessions_loaded": m.sessions,
        "load_average": round(os.getloadavg()[0], 2),
        "loaded_cpu_cores": round(cores, 2),
        "loaded_wall_s": round(wall, 1),
        "targets": {"stop_p99_ms_loaded": 40.0, "chunks_after_fence": 0},
    })


if __name__ == "__main__":
    main()
