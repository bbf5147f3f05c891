"""PocketsphinxSTT: offline streaming recognition (model ships in the wheel).

Audio is resampled to 16 kHz if needed and fed to a pooled decoder in a worker
thread in ~100 ms batches. A partial transcript is emitted whenever the
hypothesis changes; the final transcript is emitted when the input ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from rspp.providers._base import STTProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind, Transcript
from rspp.providers.offline._espeak import resample_pcm

__all__ = ["PocketsphinxSTT"]

_RATE = 16000
_BATCH_BYTES = _RATE * 2 // 10  # 100 ms


class _Decoder:
    """A pocketsphinx decoder plus the lock that serialises every call into it.

    A cancelled ``asyncio.to_thread`` call keeps running in its worker thread, so
    the clean-up path must wait for it instead of touching the decoder concurrently.
    """

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.lock = threading.Lock()


class _DecoderPool:
    """Loading the model takes ~1 s, so idle decoders are kept for reuse."""

    def __init__(self) -> None:
        self._idle: list[_Decoder] = []
        self._lock = threading.Lock()

    def acquire(self) -> _Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        try:
            import pocketsphinx
        except ImportError as exc:  # pragma: no cover - extra not installed
            raise ProviderCallError(
                "pocketsphinx is not installed; "
                "install the 'speech' extra: pip install 'rspp[speech]'",
                outcome=Outcome.INTERNAL,
                provider="pocketsphinx",
                code="missing_dependency",
            ) from exc
        pocketsphinx.set_loglevel("FATAL")
        return _Decoder(pocketsphinx.Decoder(samprate=_RATE, loglevel="FATAL"))

    def release(self, decoder: _Decoder) -> None:
        with self._lock:
            self._idle.append(decoder)


_POOL = _DecoderPool()


class PocketsphinxSTT(STTProvider):
    """Offline streaming STT with partial hypotheses."""

    capabilities = Capabilities(
        kind=ProviderKind.STT,
        streaming=True,
        languages=("en-US",),
        sample_rates=(8000, 16000, 22050, 24000, 44100, 48000),
        interim_results=True,
        offline=True,
    )
    default_timeout_ms = 30_000

    def __init__(self, provider_id: str = "pocketsphinx", **kwargs: object) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def _begin(d: _Decoder) -> None:
        with d.lock:
            d.decoder.start_utt()

    @staticmethod
    def _feed(d: _Decoder, pcm: bytes) -> str:
        with d.lock:
            d.decoder.process_raw(pcm, False, False)
            hyp = d.decoder.hyp()
        return str(hyp.hypstr) if hyp is not None else ""

    @staticmethod
    def _finish(d: _Decoder, pcm: bytes) -> tuple[str, float | None]:
        with d.lock:
            if pcm:
                d.decoder.process_raw(pcm, False, False)
            d.decoder.end_utt()
            hyp = d.decoder.hyp()
            if hyp is None:
                return "", None
            try:
                confidence: float | None = float(d.decoder.get_logmath().exp(hyp.prob))
            except Exception:
                confidence = None
        return str(hyp.hypstr), confidence

    @staticmethod
    def _abandon(d: _Decoder) -> None:
        """End a cancelled utterance (waits for an in-flight worker call first)."""
        with d.lock:
            try:
                d.decoder.end_utt()
            except Exception:  # nothing to end
                pass

    async def _recognize(
        self, audio: AsyncIterator[AudioChunk], invocation: ProviderInvocation
    ) -> AsyncIterator[Transcript]:
        decoder = await asyncio.to_thread(_POOL.acquire)
        started = False
        try:
            await asyncio.to_thread(self._begin, decoder)
            started = True
            pending = b""
            last = ""
            async for chunk in audio:
                if chunk.channels != 1:
                    raise ProviderCallError(
                        f"channels={chunk.channels}: pocketsphinx needs mono audio; downmix first",
                        outcome=Outcome.BAD_REQUEST,
                        provider=self.provider_id,
                        code="channels",
                    )
                pending += resample_pcm(chunk.pcm, chunk.sample_rate, _RATE)
                if len(pending) < _BATCH_BYTES:
                    continue
                batch, pending = pending, b""
                hyp = await asyncio.to_thread(self._feed, decoder, batch)
                if hyp and hyp != last:
                    last = hyp
                    yield Transcript(text=hyp, is_final=False)
            text, confidence = await asyncio.to_thread(self._finish, decoder, pending)
            started = False
            yield Transcript(text=text, is_final=True, confidence=confidence, speech_final=True)
        finally:
            if started:
                self._abandon(decoder)
            _POOL.release(decoder)
