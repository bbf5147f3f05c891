"""Voice activity detectors: energy threshold (default) and webrtcvad.

Both classify one frame of PCM s16le mono (10, 20 or 30 ms) as speech or not;
Silero (onnxruntime) is an optional extra not bundled here.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["EnergyVAD", "VoiceActivityDetector", "WebRtcVAD"]


class VoiceActivityDetector(Protocol):
    sample_rate: int

    def is_speech(self, frame: bytes) -> bool: ...


def _check_frame(frame: bytes, sample_rate: int) -> None:
    samples = len(frame) // 2
    if samples * 1000 not in (sample_rate * 10, sample_rate * 20, sample_rate * 30):
        raise ValueError(
            f"frame of {samples} samples at {sample_rate} Hz: VAD frames must be 10, 20 or 30 ms"
        )


class EnergyVAD:
    """Speech when the frame's RMS level exceeds ``threshold_dbfs``."""

    def __init__(self, sample_rate: int = 16000, *, threshold_dbfs: float = -40.0) -> None:
        self.sample_rate = sample_rate
        self.threshold_dbfs = threshold_dbfs

    @staticmethod
    def level_dbfs(frame: bytes) -> float:
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float64)
        if samples.size == 0:
            return -120.0
        rms = float(np.sqrt(np.mean(samples * samples)))
        return -120.0 if rms <= 0 else 20.0 * float(np.log10(rms / 32768.0))

    def is_speech(self, frame: bytes) -> bool:
        _check_frame(frame, self.sample_rate)
        return self.level_dbfs(frame) > self.threshold_dbfs


class WebRtcVAD:
    """The WebRTC GMM VAD (webrtcvad-wheels); ``aggressiveness`` 0..3."""

    def __init__(self, sample_rate: int = 16000, *, aggressiveness: int = 2) -> None:
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(
                f"sample_rate={sample_rate}: webrtcvad supports 8000/16000/32000/48000"
            )
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness={aggressiveness}: must be 0, 1, 2 or 3")
        import webrtcvad

        self.sample_rate = sample_rate
        self._vad = webrtcvad.Vad(aggressiveness)

    def is_speech(self, frame: bytes) -> bool:
        _check_frame(frame, self.sample_rate)
        return bool(self._vad.is_speech(frame, self.sample_rate))
