"""Ingress jitter buffer (F-087) under simulated bad networks: added latency, losses, cost.

A sender emits numbered 20 ms frames (16 kHz PCM16) in real time; a simulated network
delays each by a base delay plus random jitter (exponential), loses some and duplicates
some (seeded). The arrivals are fed to :class:`rspp.transports.JitterBuffer` on a virtual
clock, with its give-up timer fired at :meth:`JitterBuffer.due`, for each named profile.

Reported per network x profile: the latency the buffer adds to frames it releases
(release - arrival: p50/p99/max, ms; the bound is the profile's ``max_ms``), frames
reordered, too late, lost and concealed (% of frames sent), and the CPU cost per frame
(µs of this process's CPU time, the benchmark's bookkeeping included). Targets: added
latency max <= ``max_ms`` of the profile in every case (``bounded``), <= 20 µs a frame.

Usage: ``python benchmarks/jitter_buffer.py [--quick] [--frames N]``; JSON last line.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser

from rspp.spec import JITTER_PRESETS, JitterProfile
from rspp.transports import JitterBuffer

RATE = 16000
SAMPLES = 320
#: name -> (base delay s, mean jitter s, loss probability, duplicate probability)
NETWORKS = {
    "clean": (0.030, 0.002, 0.0, 0.0),
    "carrier": (0.060, 0.015, 0.01, 0.002),
    "bad_wifi": (0.040, 0.030, 0.03, 0.01),
}


def _frames(n: int) -> list[bytes]:
    return [np.full(SAMPLES, k % 30000 + 1, dtype=np.int16).tobytes() for k in range(n)]


def _arrivals(n: int, net: tuple[float, float, float, float],
              seed: int) -> list[tuple[float, int]]:
    base, jitter, loss, dup = net
    rng = random.Random(seed)
    out = []
    for k in range(n):
        if rng.random() < loss:
            continue
        sent = k * 0.02
        out.append((sent + base + rng.expovariate(1 / jitter), k))
        if rng.random() < dup:
            out.append((sent + base + rng.expovariate(1 / jitter), k))
    out.sort()
    return out


def run(profile: JitterProfile, arrivals: list[tuple[float, int]], frames: list[bytes],
        sent: int) -> dict[str, float | int | bool]:
    buf = JitterBuffer(profile, RATE)
    arrived: dict[int, float] = {}
    holds: list[float] = []

    def take(pieces: list, now: float) -> None:  # type: ignore[type-arg]
        for p in pieces:
            if not p.concealed:
                k = int.from_bytes(p.pcm[:2], "little") - 1
                holds.append((now - arrived[k]) * 1000.0)

    t0 = time.process_time()
    for at, k in arrivals:
        due = buf.due()
        while due is not None and due <= at:
            take(buf.expire(due), due)
            due = buf.due()
        arrived.setdefault(k, at)
        take(buf.push(frames[k], k, at), at)
    take(buf.flush(arrivals[-1][0]), arrivals[-1][0])
    cpu_us = (time.process_time() - t0) / max(1, len(arrivals)) * 1e6
    st = buf.stats
    pct = 100.0 / sent
    hold_max = max(holds, default=0.0)
    return {"hold_p50_ms": round(percentile(holds, 50), 1),
            "hold_p99_ms": round(percentile(holds, 99), 1),
            "hold_max_ms": round(hold_max, 1), "bound_ms": profile.max_ms,
            "bounded": hold_max <= profile.max_ms + 1e-6,
            "reordered_pct": round(st.reordered * pct, 2),
            "too_late_pct": round(st.too_late * pct, 2),
            "lost_pct": round(st.lost * pct, 2), "concealed_pct": round(st.concealed * pct, 2),
            "duplicates": st.duplicates, "depth_end_ms": round(buf.depth_ms, 1),
            "cpu_us_per_frame": round(cpu_us, 2)}


def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--frames", type=int, default=None, help="frames per network")
    args = parser.parse_args()
    n = args.frames or (3000 if args.quick else 50000)
    frames = _frames(n)
    results: dict[str, dict[str, dict[str, float | int | bool]]] = {}
    for net_name, net in NETWORKS.items():
        arrivals = _arrivals(n, net, seed=87)
        results[net_name] = {}
        for name, profile in JITTER_PRESETS.items():
            r = run(profile, arrivals, frames, n)
            results[net_name][name] = r
            print(f"{net_name:9s} {name:12s} hold p50={r['hold_p50_ms']:6.1f} "
                  f"p99={r['hold_p99_ms']:6.1f} max={r['hold_max_ms']:6.1f} ms "
                  f"(bound {r['bound_ms']}) reordered={r['reordered_pct']:5.2f}% "
                  f"late={r['too_late_pct']:5.2f}% lost={r['lost_pct']:5.2f}% "
                  f"concealed={r['concealed_pct']:5.2f}% cpu={r['cpu_us_per_frame']:.1f} µs",
                  flush=True)
    worst_cpu = max(r["cpu_us_per_frame"] for p in results.values() for r in p.values())
    emit({"benchmark": "jitter_buffer", "frames_per_network": n,
          "bounded": all(r["bounded"] for p in results.values() for r in p.values()),
          "cpu_us_per_frame_max": worst_cpu, "results": results})


if __name__ == "__main__":
    main()
