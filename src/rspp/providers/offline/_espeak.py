"""EspeakTTS: offline espeak-ng synthesis through espeakng-loader (ctypes).

libespeak-ng keeps global state, so one process-wide engine serialises calls
behind a lock and runs them in a worker thread. Text streams in; each complete
sentence is synthesised as soon as it exists (F-064), resampled with soxr to
the requested rate and yielded in fixed-size PCM s16le chunks.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from rspp.providers._base import TTSProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._sentences import speak_by_sentence, split_sentences
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind

__all__ = ["EspeakEngine", "EspeakTTS", "split_sentences"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_RATE_PARAM = 1
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakEngine:
    """The process-wide libespeak-ng handle (lazy, thread-safe)."""

    _instance: EspeakEngine | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - extra not installed
            raise ProviderCallError(
                "espeakng-loader is not installed; "
                "install the 'speech' extra: pip install 'rspp[speech]'",
                outcome=Outcome.INTERNAL,
                provider="espeak",
                code="missing_dependency",
            ) from exc
        self._lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
        lib = self._lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = int(lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0))
        if self.sample_rate <= 0:
            raise ProviderCallError(
                "libespeak-ng failed to initialise", outcome=Outcome.INTERNAL, provider="espeak"
            )
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._on_audio)
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        self._voice: str | None = None

    @classmethod
    def get(cls) -> EspeakEngine:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav: Any, count: int, events: Any) -> int:
        if count > 0:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        return 0

    def synth(self, text: str, *, voice: str = "en-us", words_per_minute: int = 160) -> bytes:
        """PCM s16le mono at :attr:`sample_rate` for ``text`` (blocking)."""
        encoded = text.encode("utf-8")
        with self._lock:
            if voice != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise ProviderCallError(
                        f"voice={voice!r} is not available in espeak-ng; use e.g. 'en-us' or 'en'",
                        outcome=Outcome.BAD_REQUEST,
                        provider="espeak",
                        code="unknown_voice",
                    )
                self._voice = voice
            self._lib.espeak_SetParameter(_RATE_PARAM, words_per_minute, 0)
            self._chunks = []
            self._lib.espeak_Synth(
                encoded, len(encoded) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
            pcm, self._chunks = b"".join(self._chunks), []
        return pcm


def resample_pcm(pcm: bytes, src_rate: int, dst_rate: int) -> bytes:
    """Resample s16le mono PCM with soxr."""
    if src_rate == dst_rate or not pcm:
        return pcm
    import soxr

    samples = np.frombuffer(pcm, dtype=np.int16)
    out = soxr.resample(samples, src_rate, dst_rate)
    return np.asarray(out, dtype=np.int16).tobytes()


class EspeakTTS(TTSProvider):
    """Offline streaming TTS: sentence-by-sentence espeak-ng synthesis."""

    capabilities = Capabilities(
        kind=ProviderKind.TTS,
        streaming=True,
        languages=("en",),
        sample_rates=(8000, 16000, 22050, 24000, 48000),
        incremental_input=True,
        offline=True,
    )

    def __init__(
        self,
        provider_id: str = "espeak",
        *,
        sample_rate: int = 16000,
        voice: str = "en-us",
        words_per_minute: int = 160,
        chunk_ms: int = 100,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        if sample_rate not in self.capabilities.sample_rates:
            raise ProviderCallError(
                f"sample_rate={sample_rate} is not supported; use one of "
                f"{list(self.capabilities.sample_rates)}",
                outcome=Outcome.BAD_REQUEST,
                provider=provider_id,
                code="sample_rate",
            )
        self.sample_rate = sample_rate
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.chunk_bytes = max(2, sample_rate * chunk_ms // 1000 * 2)

    async def _render(self, sentence: str) -> AsyncIterator[AudioChunk]:
        engine = await asyncio.to_thread(EspeakEngine.get)
        raw = await asyncio.to_thread(
            engine.synth, sentence, voice=self.voice, words_per_minute=self.words_per_minute
        )
        pcm = resample_pcm(raw, engine.sample_rate, self.sample_rate)
        for offset in range(0, len(pcm), self.chunk_bytes):
            yield AudioChunk(pcm[offset : offset + self.chunk_bytes], self.sample_rate)

    async def _synthesize(
        self, text: AsyncIterator[str], invocation: ProviderInvocation
    ) -> AsyncIterator[AudioChunk]:
        async for chunk in speak_by_sentence(text, self._render):
            yield chunk
