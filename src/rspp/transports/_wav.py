"""WAV file input/output for the loopback transport (PCM s16le; mono out)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from rspp.errors import RSPPError

__all__ = ["WavError", "read_wav", "write_wav"]


class WavError(RSPPError):
    """A WAV file is missing, unreadable or in an unsupported format."""


def read_wav(path: str | Path) -> tuple[bytes, int]:
    """``(pcm_s16le_mono, sample_rate)`` of a 16-bit PCM WAV (stereo is downmixed)."""
    p = Path(path)
    if not p.exists():
        raise WavError(f"{p}: file not found; pass an existing WAV file (e.g. from `rspp say`)")
    if not p.is_file():
        raise WavError(f"{p}: not a regular file; pass a WAV file")
    try:
        with wave.open(str(p), "rb") as w:
            width, channels, rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(
            f"{p}: not a WAV file ({exc}); convert it to 16-bit PCM WAV, e.g. "
            "`ffmpeg -i IN -ac 1 -ar 16000 -sample_fmt s16 OUT.wav`"
        ) from None
    if width != 2:
        raise WavError(f"{p}: sample width {8 * width} bit; RSPP reads 16-bit PCM WAV only")
    if not 8000 <= rate <= 48000:
        raise WavError(f"{p}: sample rate {rate} Hz; use 8000..48000 Hz")
    if channels > 1:
        samples = np.frombuffer(frames, dtype=np.int16)
        samples = samples[: len(samples) // channels * channels]
        frames = samples.reshape(-1, channels).mean(axis=1).astype(np.int16).tobytes()
    if not frames:
        raise WavError(f"{p}: the WAV file holds no audio")
    return frames, rate


def write_wav(path: str | Path, pcm: bytes, rate: int) -> None:
    """Write mono 16-bit PCM."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
