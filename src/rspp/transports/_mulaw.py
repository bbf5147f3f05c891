"""G.711 mu-law <-> PCM16 with lookup tables.

Telephony carriers stream 8 kHz mono mu-law (one byte a sample); every 20 ms
``media`` message in and out goes through here, so both directions are one C-level
table lookup. :func:`mulaw_decode` expands the ITU-T G.711 segments through two
256-entry byte tables (the low and the high byte of each PCM16 sample, interleaved
by ``bytes.translate`` and an extended-slice assignment); where the standard library
still has ``audioop`` (Python 3.11 and 3.12; it is gone in 3.13), its ``ulaw2lin``
does the same expansion (the same table, sample for sample: tests check every code)
in a sixth of the instructions, and is used instead. :func:`mulaw_encode` indexes
a 65 536-entry table by the raw 16-bit sample (built once from the segment rule: bias
0x84, clip 32 635, inverted bits), so encoding a 20 ms frame is one ``take``
(``audioop.lin2ulaw`` quantises 381 of the 65 536 samples differently: not used).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

__all__ = ["mulaw_decode", "mulaw_decode_tables", "mulaw_encode", "mulaw_expand"]

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


def mulaw_decode_tables(data: bytes) -> bytes:
    """mu-law bytes -> PCM16 little-endian (twice as many bytes), by the byte tables."""
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(_LOW)
    out[1::2] = data.translate(_HIGH)
    return bytes(out)


def _ulaw2lin() -> Callable[[bytes, int], bytes] | None:
    """``audioop.ulaw2lin`` where the standard library has it (deprecated, not warned
    about here: its absence is handled), on a little-endian machine (its samples are
    native-endian)."""
    import sys

    if sys.byteorder != "little":
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from audioop import ulaw2lin
    except ImportError:
        return None
    return ulaw2lin


_AUDIOOP_DECODE = _ulaw2lin()


def _mulaw_decode_audioop(data: bytes) -> bytes:
    """mu-law bytes -> PCM16 little-endian (twice as many bytes), by ``audioop``."""
    return _AUDIOOP_DECODE(data, 2)  # type: ignore[misc]


#: mu-law bytes -> PCM16 little-endian (twice as many bytes)
mulaw_decode: Callable[[bytes], bytes] = (
    mulaw_decode_tables if _AUDIOOP_DECODE is None else _mulaw_decode_audioop)


def _expand_tables(data: bytes, width: int) -> bytes:
    return mulaw_decode_tables(data)


#: ``mulaw_expand(data, 2)`` is :func:`mulaw_decode` without a Python call of its own
#: where ``audioop`` is there (``ulaw2lin`` itself: the per-message path of a phone call);
#: the width is always 2
mulaw_expand: Callable[[bytes, int], bytes] = (
    _expand_tables if _AUDIOOP_DECODE is None else _AUDIOOP_DECODE)


_U16 = np.dtype("<u2")


def mulaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> mu-law bytes (a trailing odd byte is ignored)."""
    if len(pcm) & 1:
        pcm = pcm[:-1]
    out: bytes = _ENCODE.take(np.frombuffer(pcm, _U16)).tobytes()
    return out
