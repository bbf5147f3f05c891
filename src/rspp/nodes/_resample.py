"""Resampler / format converter: any PCM s16le rate and channel count to ``rate_hz`` mono.

Streaming (soxr ``ResampleStream``, state kept across chunks so chunk edges
leave no artefacts); ``sample_index`` is rewritten in the output rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rspp.kernel import AudioFormat, Event, Node, NodeContext

__all__ = ["ResamplerNode"]


class ResamplerNode(Node):
    """Converts audio to ``rate_hz`` (default 16000) and ``channels`` (default 1)."""

    type_name = "resampler"
    inputs = ("audio",)
    outputs = ("audio",)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.rate = int(self.params.get("rate_hz", 16000))
        self.channels = int(self.params.get("channels", 1))
        if self.rate < 8000 or self.rate > 192000:
            raise ValueError(f"rate_hz={self.rate}: must be between 8000 and 192000")
        if self.channels != 1:
            raise ValueError(f"channels={self.channels}: only mono output is supported")
        self.fmt = AudioFormat(self.rate, 1)
        self._streams: dict[int, Any] = {}
        self._out_samples = 0

    def convert(self, pcm: bytes, fmt: AudioFormat) -> bytes:
        samples = np.frombuffer(pcm, dtype=np.int16)
        if fmt.channels > 1:
            frames = samples[: len(samples) // fmt.channels * fmt.channels]
            samples = frames.reshape(-1, fmt.channels).mean(axis=1).astype(np.int16)
        if fmt.sample_rate == self.rate:
            return samples.tobytes()
        stream = self._streams.get(fmt.sample_rate)
        if stream is None:
            import soxr

            stream = self._streams[fmt.sample_rate] = soxr.ResampleStream(
                fmt.sample_rate, self.rate, 1, dtype="int16"
            )
        return np.asarray(stream.resample_chunk(samples), dtype=np.int16).tobytes()

    def process(self, event: Event, port: str) -> Event | None:
        fmt = event.audio_format
        if event.kind != "audio_chunk" or fmt is None or not isinstance(event.payload, bytes):
            return event
        if fmt.codec != "pcm_s16le":
            raise ValueError(f"codec {fmt.codec!r}: the resampler converts pcm_s16le only")
        if fmt.sample_rate == self.rate and fmt.channels == 1:
            return event
        out = event.derive("audio_chunk", self.convert(event.payload, fmt),
                           audio_format=self.fmt, sample_index=self._out_samples,
                           attrs=event.attrs)
        out.turn_id = event.turn_id
        self._out_samples += len(out.payload) // 2
        return out
