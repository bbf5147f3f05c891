"""CPU per carrier media message of the telephony adapter's own work, a CPU-time measure.

What a phone call costs on top of the live path every transport shares (measured as a
whole by ``phone_sessions.py`` against ``ws_sessions.py``). Per 20 ms ``media``
message in: the carrier JSON decode, strict base64, mu-law -> PCM16 and the 8 -> 16 kHz
soxr stream (``QQ``, as phone connections resample) re-chunked into 20 ms pipeline
frames. Per reply frame out: 16 -> 8 kHz soxr, PCM16 -> mu-law and the outbound
``media`` text. ``--calls`` streams are stepped round robin (a runtime's working set of
resampler states, not one warm stream). Thread CPU time, the best of the repetitions,
so a loaded machine moves it little (unlike the real-time benchmarks).
``ms_per_call_second``: 50 messages in and the reply share out (``phone_sessions.py``:
25 reply frames every 3 s). ``--rate 8000``: a pipeline at the carrier's rate, where
neither direction resamples (the frames pass as decoded).

Usage: ``python benchmarks/phone_codec.py [--quick] [--calls 200] [--rate 16000]``;
JSON last line.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, quick_parser

from rspp.transports import Rechunker, StreamResampler, mulaw_decode, mulaw_encode
from rspp.transports._twilio_protocol import (
    CarrierWriter,
    Media,
    decode_carrier,
    decode_payload,
)

REPLY_SHARE = 25 / 150  # reply frames per inbound message (25 frames every 3 s)


def _speech(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    return (np.sin(2 * np.pi * 220 * t) * 6000 + rng.normal(0, 800, n)).astype("<i2")


def _media_texts(frames: int) -> list[str]:
    """A call's inbound messages, as a carrier numbers and stamps them."""
    mu = mulaw_encode(_speech(160 * frames, 1).tobytes())
    return [json.dumps({"event": "media", "sequenceNumber": str(i + 2),
                        "media": {"track": "inbound", "chunk": str(i + 1),
                                  "timestamp": str(i * 20),
                                  "payload": base64.b64encode(mu[i * 160:(i + 1) * 160]).decode()},
                        "streamSid": "MZbench"}, separators=(",", ":"))
            for i in range(frames)]


def _best(step: Callable[[int], object], calls: int, rounds: int, reps: int) -> float:
    """µs of thread CPU per step, best of ``reps`` runs of ``rounds`` x ``calls`` steps."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time_ns()
        for r in range(rounds):
            for k in range(calls):
                step(r * calls + k)
        best = min(best, (time.thread_time_ns() - t0) / (rounds * calls) / 1000)
    return best


def main(calls: int, rounds: int, reps: int, rate: int) -> dict[str, object]:
    texts = _media_texts(50)
    ins = [Rechunker(8000, rate, 20, "QQ") for _ in range(calls)]
    outs = [StreamResampler(rate, 8000, "QQ") for _ in range(calls)]
    writers = [CarrierWriter(f"MZ{k}") for k in range(calls)]
    # a 20 ms reply frame at the pipeline rate
    reply = np.repeat(_speech(160, 2), rate // 8000).astype("<i2").tobytes()
    frames = [0]

    def inbound(i: int) -> None:
        msg = decode_carrier(texts[i % len(texts)])
        if not isinstance(msg, Media):
            raise TypeError(f"not a media message: {msg!r}")
        pcm = mulaw_decode(decode_payload(msg, 8000))
        frames[0] += len(ins[i % calls].push(pcm))

    def outbound(i: int) -> None:
        k = i % calls
        writers[k].media(mulaw_encode(outs[k].convert(reply)))

    us_in = _best(inbound, calls, rounds, reps)
    us_out = _best(outbound, calls, rounds, reps)
    if not frames[0]:
        raise RuntimeError("the re-chunker produced no pipeline frame")
    return {"benchmark": "phone_codec", "calls": calls, "pipeline_rate": rate,
            "us_per_message_in": round(us_in, 2), "us_per_message_out": round(us_out, 2),
            "ms_per_call_second": round(50 * (us_in + REPLY_SHARE * us_out) / 1000, 3),
            "measure": "thread CPU time, best of repetitions; in: carrier JSON -> pipeline "
                       "frames; out: a pipeline-rate reply frame -> carrier JSON"}


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rate", type=int, default=16000, choices=(8000, 16000, 24000, 48000),
                    help="the pipeline's sample rate")
    a = ap.parse_args()
    emit(main(a.calls, 10 if a.quick else 50, 3 if a.quick else 7, a.rate))
