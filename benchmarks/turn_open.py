"""Turn open through real sessions: end of utterance -> ``turn_open``, idle and loaded.

Every session is what ``rspp run --real-time`` assembles (SessionActor, built-in VAD /
STT / LLM / segmenter / TTS nodes, turn driver with arbiter, admission, authority and
plan resolver, cancel scopes, recorder) around the loopback transport streaming 20 ms
frames in real time; only the providers are mocks (``_real_session.py``). The latency
is the turn driver's own timing of each turn: the VAD's end-of-utterance call to the
moment ``turn_open`` was emitted (T1, admission, snapshot check, authority, plan
freeze, T5). Each session has two turns (a question, then a barge-in that is answered).
Targets: p99 <= 10 ms at 200 sessions.

Usage: ``python benchmarks/turn_open.py [--quick | --smoke] [--sessions 200]``; JSON last line.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile
from _real_session import SessionResult, measure


def _opens(results: list[SessionResult]) -> list[float]:
    return [ms for r in results for ms in r.turn_open_ms]


def main() -> None:
    m = measure(__doc__)
    idle, loaded, cores, wall = m.idle, m.loaded, m.cores, m.wall_s
    oi, ol = _opens(idle), _opens(loaded)
    for name, o in (("idle (1 session)", oi), (f"loaded ({m.sessions} sessions)", ol)):
        print(f"{name:24s} turns={len(o):4d} p50={percentile(o, 50):.3f} ms "
              f"p99={percentile(o, 99):.3f} ms max={max(o, default=0.0):.3f} ms", flush=True)
    emit({
        "benchmark": "turn_open",
        "p50_ms": round(percentile(oi, 50), 3),
        "p99_ms": round(percentile(oi, 99), 3),
        "p50_ms_loaded": round(percentile(ol, 50), 3),
        "p99_ms_loaded": round(percentile(ol, 99), 3),
        "turns_measured": [len(oi), len(ol)],
        "sessions_loaded": m.sessions,
        "load_average": round(os.getloadavg()[0], 2),
        "loaded_cpu_cores": round(cores, 2),
        "loaded_wall_s": round(wall, 1),
        "targets": {"p99_ms_loaded": 10.0},
    })


if __name__ == "__main__":
    main()
