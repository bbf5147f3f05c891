"""libsoxr called directly (transports._soxr_direct) resamples exactly as python-soxr.

The per-frame resampler of every live connection calls libsoxr's C API through cffi
instead of python-soxr's ``ResampleStream`` (a seventh of the instructions per 20 ms
frame); it must release the same samples, in the same pieces, for any chunking a
connection produces, and the end-of-stream flush too.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from rspp.transports import _ingress
from rspp.transports._ingress import Rechunker, StreamResampler
from rspp.transports._soxr_direct import DirectStream, open_stream

pytestmark = pytest.mark.unit

SPEECHLIKE = (np.random.RandomState(7).randn(3 * 48000) * 4000).astype(np.int16)


def _python_soxr(in_rate: int, out_rate: int, pieces: list[bytes]) -> list[bytes]:
    """The reference: python-soxr's stream on the same pieces, then its flush."""
    s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="QQ")
    out = [s.resample_chunk(np.frombuffer(p, dtype=np.int16)).tobytes() for p in pieces]
    return [*out, s.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()]


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (16000, 8000),
                                                    (16000, 24000), (24000, 16000),
                                                    (48000, 16000)])
@pytest.mark.parametrize("piece_ms", [10, 20, 40, 137 / 8])
def test_direct_stream_releases_what_python_soxr_releases(in_rate: int, out_rate: int,
                                                          piece_ms: float) -> None:
    audio = SPEECHLIKE[: in_rate * 2].tobytes()  # 2 s
    step = 2 * max(1, int(in_rate * piece_ms / 1000))
    pieces = [audio[i:i + step] for i in range(0, len(audio), step)]
    direct = open_stream(in_rate, out_rate, "QQ")
    assert direct is not None  # python-soxr here exports libsoxr's API: the product uses it
    got = [direct.convert(p) for p in pieces] + [direct.convert(b"", last=True)]
    # piece for piece: the same samples released at the same call (the connection's
    # frames come out at the same time), and the flush holds the same filter tail
    assert got == _python_soxr(in_rate, out_rate, pieces)


def test_long_input_goes_in_python_soxrs_pieces_and_views_are_taken() -> None:
    audio = SPEECHLIKE[:8000 * 9].tobytes()  # 9 s at 8 kHz: longer than one 48000 x in/out
    direct = open_stream(8000, 16000, "QQ")
    assert direct is not None
    assert direct.convert(bytearray(audio)) + direct.convert(b"", last=True) == \
        b"".join(_python_soxr(8000, 16000, [audio]))
    assert direct.convert(b"") == b""  # no input, no call (a null input would end it)


def test_stream_resampler_and_rechunker_use_it_and_fall_back_to_python_soxr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    audio = SPEECHLIKE[:4000].tobytes()  # 0.5 s at 8 kHz, in 20 ms carrier frames
    frames = [audio[i:i + 320] for i in range(0, len(audio), 320)]

    def run() -> tuple[list[bytes], bytes]:
        r = Rechunker(8000, 16000, 20, "QQ")
        out = [f for pcm in frames for f in r.push(pcm)]
        return out, r._resampler.flush()

    direct = StreamResampler(8000, 16000, "QQ")
    assert isinstance(direct._stream, DirectStream)
    fast = run()
    monkeypatch.setattr(_ingress, "open_stream", lambda *a: None)
    fallback = StreamResampler(8000, 16000, "QQ")
    assert isinstance(fallback._stream, soxr.ResampleStream)
    assert run() == fast
    assert all(len(f) == 640 for f in fast[0]) and len(fast[0]) == 24  # ~4 samples held back
    # the odd byte of a split sample waits for its other half, on both paths alike
    split = []
    for r in (StreamResampler(8000, 16000, "QQ"), fallback):
        split.append(r.convert(audio[:321]) + r.convert(audio[321:640]) + r.flush())
    assert split[0] == split[1] and len(split[0]) == 4 * 320
