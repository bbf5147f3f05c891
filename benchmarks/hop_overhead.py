"""Per-hop kernel overhead: 20 ms PCM frames through chains of passthrough nodes.

20k frames (16 kHz mono int16, 640 bytes) through chains of 1, 4 and 16
passthrough nodes, inline and async. ``us_per_hop`` is the marginal cost of one
more hop (slope between the 1- and 16-node chains, which removes ingress/egress
cost); ``raw`` gives total time / (frames * hops) per chain as well.
Usage: ``python benchmarks/hop_overhead.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick_parser

import rspp.nodes._builtin_simple  # noqa: F401  (registers passthrough nodes)
from rspp.kernel import AudioFormat, BufferConfig, Event, GraphBuilder, SessionActor

FMT = AudioFormat(16000, 1, "pcm_s16le")
PAYLOAD = bytes(640)
CHUNK = 50


async def run_chain(kind: str, hops: int, frames: int) -> float:
    b = GraphBuilder("hop", "1.0.0")
    ids = [f"n{i}" for i in range(hops)]
    for i in ids:
        b.node(i, kind)
    b.chain(*ids, buffer=BufferConfig(max_items=128, max_queue_ms=10_000, max_latency_ms=10_000))
    graph = b.build()
    done = asyncio.get_running_loop().create_future()
    count = 0

    def sink(port: str, ev: Event) -> None:
        nonlocal count
        count += 1
        if count == frames and not done.done():
            done.set_result(None)

    s = SessionActor(graph, session_id=f"{kind}-{hops}", output_sink=sink)
    await s.start()
    events = [Event("audio_chunk", PAYLOAD, audio_format=FMT, sample_index=i * 320)
              for i in range(frames)]
    gc.collect()
    gc.disable()
    t0 = time.perf_counter()
    push = s.push
    for i in range(0, frames, CHUNK):
        for ev in events[i:i + CHUNK]:
            push(ev)
        while count < i + CHUNK and count < frames:  # noqa: ASYNC110 - busy-yield is the point
            await asyncio.sleep(0)
    await done
    elapsed = time.perf_counter() - t0
    gc.enable()
    await s.stop()
    if count != frames:
        raise RuntimeError(f"lost frames: {count}/{frames}")
    return elapsed


async def main(quick: bool) -> None:
    frames = 20_000
    repeats = 1 if quick else 3
    results: dict[str, dict[int, float]] = {}
    for kind in ("passthrough", "async_passthrough"):
        results[kind] = {}
        for hops in (1, 4, 16):
            best = min([await run_chain(kind, hops, frames) for _ in range(repeats)])
            results[kind][hops] = best
            print(f"{kind:18s} hops={hops:2d} total={best * 1e3:8.1f} ms "
                  f"per-frame={best / frames * 1e6:7.2f} us "
                  f"raw-per-hop={best / frames / hops * 1e6:6.2f} us "
                  f"frames/s={frames / best:,.0f}")

    def slope(kind: str) -> float:
        r = results[kind]
        return (r[16] - r[1]) / (15 * frames) * 1e6

    emit({
        "benchmark": "hop_overhead",
        "inline_us_per_hop": round(slope("passthrough"), 3),
        "async_us_per_hop": round(slope("async_passthrough"), 3),
        "frames": frames,
        "raw_us_per_hop": {
            k.replace("async_passthrough", "async").replace("passthrough", "inline"): {
                str(h): round(v / frames / h * 1e6, 3) for h, v in r.items()
            } for k, r in results.items()
        },
        "frames_per_s": {
            k.replace("async_passthrough", "async").replace("passthrough", "inline"): {
                str(h): round(frames / v) for h, v in r.items()
            } for k, r in results.items()
        },
        "targets": {"inline_us_per_hop": 2.0, "async_us_per_hop": 8.0},
    })


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    asyncio.run(main(ap.parse_args().quick))
