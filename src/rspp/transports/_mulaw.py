"""G.711 mu-law <-> PCM16 with two lookup tables (numpy; ``audioop`` is gone in Python 3.13).

Telephony carriers stream 8 kHz mono mu-law (one byte a sample). :func:`mulaw_decode`
indexes a 256-entry table of the ITU-T G.711 segment expansion; :func:`mulaw_encode`
indexes a 65 536-entry table built once from the same segment rule (bias 0x84,
clip 32 635, inverted bits), so encoding a 20 ms frame is one ``take``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mulaw_decode", "mulaw_encode"]

_BIAS = 0x84
_CLIP = 32635


def _decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    # exponent: the position of the highest set bit above bit 7 (0..7)
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


_DECODE = _decode_table()
_ENCODE = _encode_table()


def mulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> PCM16 little-endian (twice as many bytes)."""
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8)).astype("<i2").tobytes()


def mulaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> mu-law bytes (a trailing odd byte is ignored)."""
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int32)
    return _ENCODE.take(samples + 32768).tobytes()
