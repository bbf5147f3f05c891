"""WAV file input/output for the loopback transport (PCM s16le; mono out).

:func:`read_wav` parses the RIFF container itself, checking every chunk size
against the bytes actually present, so a hostile or damaged header (a ``fmt``
chunk claiming 0xFFFFFFF0 bytes, a truncated file, zero channels) is a
:class:`WavError` naming the file and the field, never an exception from the
standard library. A ``data`` chunk whose size runs past the end of the file
(streamed recordings write 0 or 0xFFFFFFFF there) is read to the end of file.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from rspp.errors import RSPPError

__all__ = ["MAX_WAV_BYTES", "WavError", "read_wav", "write_wav"]

MAX_WAV_BYTES = 1 << 30
"""Largest input WAV read (1 GiB, about 9 hours of 16 kHz mono)."""

_PCM = 1
_EXTENSIBLE = 0xFFFE
_CONVERT = ("convert it to 16-bit PCM WAV, e.g. "
            "`ffmpeg -i IN -ac 1 -ar 16000 -sample_fmt s16 OUT.wav`")


class WavError(RSPPError):
    """A WAV file is missing, unreadable or in an unsupported format."""


def _fail(path: Path, field: str, message: str) -> WavError:
    return WavError(f"{path}: {field}: {message}")


def _chunks(path: Path, data: bytes) -> dict[bytes, bytes]:
    """The ``fmt `` and ``data`` chunks of a RIFF/WAVE file (sizes checked)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _fail(path, "header", f"not a WAV file (no RIFF/WAVE header); {_CONVERT}")
    found: dict[bytes, bytes] = {}
    offset = 12
    while offset + 8 <= len(data) and b"data" not in found:
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body_start = offset + 8
        left = len(data) - body_start
        name = chunk_id.decode("latin-1").strip() or "?"
        if size > left:
            if chunk_id != b"data":
                raise _fail(path, f"{name}.chunk_size",
                            f"{size} bytes, but only {left} bytes follow; the file is damaged "
                            f"or truncated; {_CONVERT}")
            size = left  # streamed WAVs leave the data size unset: read to end of file
        if chunk_id in (b"fmt ", b"data"):
            found.setdefault(chunk_id, data[body_start:body_start + size])
        offset = body_start + size + (size & 1)  # chunks are word aligned
    if b"fmt " not in found:
        raise _fail(path, "fmt", f"no 'fmt ' chunk before the audio data; {_CONVERT}")
    if b"data" not in found:
        raise _fail(path, "data", "no 'data' chunk; the WAV file holds no audio")
    return found


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """``(pcm_s16le_mono, sample_rate)`` of a 16-bit PCM WAV (stereo is downmixed)."""
    p = Path(path)
    if not p.exists():
        raise WavError(f"{p}: file not found; pass an existing WAV file (e.g. from `rspp say`)")
    if not p.is_file():
        raise WavError(f"{p}: not a regular file; pass a WAV file")
    try:
        size = p.stat().st_size
        if size > MAX_WAV_BYTES:
            raise _fail(p, "size", f"{size} bytes is over the {MAX_WAV_BYTES}-byte limit; "
                        "split the recording")
        data = p.read_bytes()
    except OSError as exc:
        raise WavError(f"{p}: cannot read file: {exc.strerror or exc}") from None
    chunks = _chunks(p, data)
    fmt = chunks[b"fmt "]
    if len(fmt) < 16:
        raise _fail(p, "fmt.chunk_size", f"{len(fmt)} bytes; a PCM 'fmt ' chunk has at least 16")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag not in (_PCM, _EXTENSIBLE):
        raise _fail(p, "fmt.format", f"audio format {tag:#06x} is not PCM; {_CONVERT}")
    if bits != 16:
        raise _fail(p, "fmt.bits_per_sample",
                    f"sample width {bits} bit; RSPP reads 16-bit PCM WAV only; {_CONVERT}")
    if not 1 <= channels <= 8:
        raise _fail(p, "fmt.channels", f"{channels}; use 1 to 8 channels")
    if not 8000 <= rate <= 48000:
        raise _fail(p, "fmt.sample_rate", f"{rate} Hz; use 8000..48000 Hz")
    frame = 2 * channels
    frames = chunks[b"data"]
    frames = frames[: len(frames) // frame * frame]
    if channels > 1:
        samples = np.frombuffer(frames, dtype=np.int16).reshape(-1, channels)
        frames = samples.mean(axis=1).astype(np.int16).tobytes()
    if not frames:
        raise _fail(p, "data", "the WAV file holds no audio")
    return frames, rate


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Write mono 16-bit PCM."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
