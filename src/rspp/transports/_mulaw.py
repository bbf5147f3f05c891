"""G.711 mu-law <-> PCM16 with lookup tables (``audioop`` is gone in Python 3.13).

Telephony carriers stream 8 kHz mono mu-law (one byte a sample); every 20 ms
``media`` message in and out goes through here, so both directions are one C-level
table lookup. :func:`mulaw_decode` expands the ITU-T G.711 segments through two
256-entry byte tables (the low and the high byte of each PCM16 sample, interleaved
by ``bytes.translate`` and an extended-slice assignment). :func:`mulaw_encode` indexes
a 65 536-entry table by the raw 16-bit sample (built once from the segment rule: bias
0x84, clip 32 635, inverted bits), so encoding a 20 ms frame is one ``take``.
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
    return np.where(sign != 0, -magnitude, magnitude).astype("<i2")


def _encode_table() -> np.ndarray:
    """mu-law code of every PCM16 sample, indexed by the sample's bits as uint16."""
    pcm = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    # exponent: the position of the highest set bit above bit 7 (0..7)
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table: np.ndarray = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return table


_DECODED = _decode_table().view(np.uint16)
#: byte tables: the low and the high byte of each code's PCM16 (little-endian) sample
_LOW = bytes((_DECODED & 0xFF).astype(np.uint8))
_HIGH = bytes((_DECODED >> 8).astype(np.uint8))
_ENCODE = _encode_table()


def mulaw_decode(data: bytes) -> bytes:
    """mu-law bytes -> PCM16 little-endian (twice as many bytes)."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(_LOW)
    out[1::2] = data.translate(_HIGH)
    return bytes(out)


def mulaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> mu-law bytes (a trailing odd byte is ignored)."""
    samples = np.frombuffer(pcm, dtype="<u2", count=len(pcm) // 2)
    return _ENCODE.take(samples).tobytes()
