"""Media-to-runtime mapping error of served sessions' ingress audio (NF-018), and its cost.

Served: ``rspp serve`` (embedded control plane) runs N sessions of an audio pipeline
(energy VAD -> pocketsphinx); each client streams 20 ms frames of quiet audio paced in
real time for S seconds over the WebSocket, then ends. The runtime measures how late
each frame arrived versus its media time (``IngressMeter``: lateness against the
mapping anchored on the connection's first frame; early audio counts 0) and exposes it
per session (the ``stats`` event's ``media_skew_p99_ms`` / ``media_skew_max_ms``) and
per runtime (``rspp_ingress_media_skew_seconds``, ``rspp_ingress_media_late_frames``).
Reported: the sessions' p99 (max over sessions, and the runtime histogram's p99 to its
bucket), the largest error, the late frames, and ``bounded``: every session's p99 within
``--media-skew-ms`` (the gate). On a loaded machine the client's own pacing is part of
the error (it is measured at the server, as a real network's would be).

Cost: CPU time of ``IngressMeter.arrive`` per frame with the mapping histogram and
without (``time.process_time`` over ``--frames`` calls, best of 5): what NF-018 adds to
every ingress frame.

Usage: ``python benchmarks/media_skew.py [--quick] [--sessions N] [--seconds S]
[--media-skew-ms B] [--frames F]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick_parser
from _served_load import KEY, Served, metric, provider_env

from rspp.client import LiveClient, route_session
from rspp.testing import DOMAIN_STT, PATIENT_BUDGETS, SILENCE_VAD, voice_assistant_spec
from rspp.transports import IngressMeter, MediaSkewHistogram, Stats

FRAME = np.full(320, 40, dtype=np.int16).tobytes()  # 20 ms at 16 kHz, quiet


async def _stream(url: str, seconds: float) -> Stats:
    target = await route_session(url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="skew-bench", timeout_s=60)
    client = await LiveClient.connect(target.url, token=target.token, open_timeout=60)
    async with client:
        t0 = time.monotonic()
        for k in range(int(seconds * 50)):
            delay = t0 + k * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # real-time pacing of a microphone
            await client.send_audio(FRAME)
        await client.end()
        stats = [e async for e in client.events() if isinstance(e, Stats)]
    return stats[-1]


def _histogram_p99_ms(exposition: str) -> float:
    """The runtime histogram's p99 (upper edge of its bucket, ms)."""
    buckets = sorted(
        (float("inf") if le == "+Inf" else float(le) * 1000.0, float(v))
        for le, v in re.findall(
            r'rspp_ingress_media_skew_seconds_bucket\{le="([^"]+)",transport="websocket"\} '
            r"(\S+)", exposition))
    if not buckets or not buckets[-1][1]:
        return 0.0
    total = buckets[-1][1]
    return next(edge for edge, n in buckets if n >= 0.99 * total)


async def served(sessions: int, seconds: float, bound_ms: float) -> dict[str, object]:
    spec_text = voice_assistant_spec("skew-bench", head=PATIENT_BUDGETS, stt=DOMAIN_STT,
                                     vad=SILENCE_VAD, reply=False)
    with tempfile.TemporaryDirectory(prefix="rspp-media-skew-") as tmp:
        work = Path(tmp)
        spec = work / "skew.yaml"
        spec.write_text(spec_text)
        async with Served(spec, work, "--media-skew-ms", str(bound_ms),
                          env=provider_env({})) as srv:
            stats = await asyncio.gather(*(_stream(srv.url, seconds) for _ in range(sessions)))
            exposition = await srv.metrics()
            await srv.stop()
    p99s = [s.media_skew_p99_ms for s in stats]
    return {"sessions": sessions, "seconds": seconds, "bound_ms": bound_ms,
            "frames": int(metric(exposition, "rspp_ingress_media_skew_seconds_count",
                                 transport="websocket") or 0),
            "session_p99_ms_max": max(p99s), "session_p99_ms_median": sorted(p99s)[len(p99s) // 2],
            "runtime_p99_ms": _histogram_p99_ms(exposition),
            "max_ms": max(s.media_skew_max_ms for s in stats),
            "late_frames": sum(s.late_frames for s in stats),
            "bounded": all(p <= bound_ms for p in p99s)}


def arrive_cost_ns(frames: int) -> dict[str, float]:
    """CPU ns per ``IngressMeter.arrive`` with the mapping histogram and without."""
    out: dict[str, float] = {}
    times = [k * 0.02 + (k % 7) * 0.001 for k in range(frames)]  # real time, some jitter
    for name, skew in (("without", False), ("with", True)):
        best = float("inf")
        for _ in range(5):
            meter = IngressMeter(16000, skew=MediaSkewHistogram() if skew else None)
            t0 = time.process_time()
            for t in times:
                meter.arrive(640, t)
            best = min(best, time.process_time() - t0)
        out[f"arrive_ns_{name}_histogram"] = round(best / frames * 1e9, 1)
    out["histogram_ns_per_frame"] = round(out["arrive_ns_with_histogram"]
                                          - out["arrive_ns_without_histogram"], 1)
    return out


def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--media-skew-ms", type=float, default=200.0)
    parser.add_argument("--frames", type=int, default=None)
    args = parser.parse_args()
    sessions = args.sessions or (4 if args.quick else 8)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    frames = args.frames or (50_000 if args.quick else 100_000)
    result: dict[str, object] = {"benchmark": "media_skew"}
    result.update(arrive_cost_ns(frames))
    result.update(asyncio.run(served(sessions, seconds, args.media_skew_ms)))
    emit(result)


if __name__ == "__main__":
    main()
