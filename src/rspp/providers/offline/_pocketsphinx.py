"""PocketsphinxSTT: offline streaming recognition (model ships in the wheel).

Audio is resampled to 16 kHz if needed and fed to a pooled decoder in a worker
thread in ~100 ms batches. A partial transcript is emitted whenever the
hypothesis changes; the final transcript is emitted when the input ends.

Configuration (provider options in a spec, ``providers.stt.config``):

* ``language_model``: ``domain`` (default; a trigram model of the assistant's
  intents plus a general fallback, built at start-up, see ``_lm.py``) or
  ``general`` (the wide-vocabulary en-us model shipped with pocketsphinx);
* ``phrases``: extra sentences added to the domain model (product names, commands);
* ``noise_floor_dbfs``: a seeded comfort-noise floor added before feature
  extraction (default -50; ``null`` turns it off). Digitally silent gaps (TTS,
  gated microphones) otherwise give the front end log-of-zero frames and the
  cepstral mean normalisation drifts; on the WER corpus this halves the error;
* ``lm_weight``: the language weight (pocketsphinx ``lw``; default 6.5);
* ``second_pass``: pocketsphinx's flat-lexicon re-search when the utterance ends
  (default true). It is slightly more accurate but makes the final transcript
  wait for a search over the whole utterance (hundreds of ms on a busy machine);
  the example spec turns it off for faster turns (docs/benchmarks.md).

Decoders start from a cepstral mean measured on conditioned speech (``_CMN_INIT``)
instead of pocketsphinx's generic one, so the first utterance of a process is
decoded as well as later ones; live CMN then adapts to the actual input.
:meth:`PocketsphinxSTT.warm_up` loads decoders (and builds the domain model)
before the first utterance; the STT node calls it when its session starts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import numpy as np

from rspp.providers._base import STTProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._types import AudioChunk, Capabilities, ProviderKind, Transcript
from rspp.providers.offline._espeak import resample_pcm
from rspp.providers.offline._lm import build_domain_lm

__all__ = ["PocketsphinxSTT"]

_RATE = 16000
_BATCH_BYTES = _RATE * 2 // 10  # 100 ms
#: converged live-CMN of the en-us model on the WER corpus (noise floor -50 dBFS)
_CMN_INIT = "65.5,-4.8,-2.0,4.4,-6.5,-2.0,0.6,-9.9,-7.0,-4.5,-0.3,-0.3,-5.1"


class _Decoder:
    """A pocketsphinx decoder plus the lock that serialises every call into it.

    A cancelled ``asyncio.to_thread`` call keeps running in its worker thread, so
    the clean-up path must wait for it instead of touching the decoder concurrently.
    """

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.lock = threading.Lock()
        self.key: _DecoderKey = ("general", (), None, True)


LanguageModel = Literal["domain", "general"]
_DecoderKey = tuple[str, tuple[str, ...], float | None, bool]


class _DecoderPool:
    """Loading the model takes ~1 s, so idle decoders are kept for reuse (per configuration)."""

    def __init__(self) -> None:
        self._idle: dict[_DecoderKey, list[_Decoder]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: _DecoderKey) -> _Decoder:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
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
        language_model, phrases, lm_weight, second_pass = key
        options: dict[str, Any] = {"samprate": _RATE, "loglevel": "FATAL", "dither": True,
                                   "cmninit": _CMN_INIT}
        if language_model == "domain":
            model = build_domain_lm(phrases)
            options["lm"], options["dict"] = str(model.lm), str(model.dictionary)
        if lm_weight is not None:
            options["lw"] = lm_weight
        if not second_pass:
            options["fwdflat"] = False
        decoder = _Decoder(pocketsphinx.Decoder(**options))
        decoder.key = key
        return decoder

    def release(self, decoder: _Decoder) -> None:
        with self._lock:
            self._idle.setdefault(decoder.key, []).append(decoder)


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

    def __init__(
        self,
        provider_id: str = "pocketsphinx",
        *,
        language_model: LanguageModel = "domain",
        phrases: Sequence[str] = (),
        noise_floor_dbfs: float | None = -50.0,
        lm_weight: float | None = None,
        second_pass: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        if language_model not in ("domain", "general"):
            raise ProviderCallError(
                f"language_model={language_model!r}: use 'domain' (the assistant's intents "
                "plus a general fallback) or 'general' (the bundled en-us model)",
                outcome=Outcome.BAD_REQUEST, provider=provider_id, code="language_model")
        if isinstance(phrases, str) or not all(isinstance(p, str) for p in phrases):
            raise ProviderCallError(
                "phrases: must be a list of sentences, e.g. ['turn on the radio']",
                outcome=Outcome.BAD_REQUEST, provider=provider_id, code="phrases")
        if phrases and language_model != "domain":
            raise ProviderCallError(
                "phrases: only the 'domain' language_model takes extra phrases",
                outcome=Outcome.BAD_REQUEST, provider=provider_id, code="phrases")
        if noise_floor_dbfs is not None and not -120.0 <= noise_floor_dbfs <= -20.0:
            raise ProviderCallError(
                f"noise_floor_dbfs={noise_floor_dbfs}: must be between -120 and -20 (or null)",
                outcome=Outcome.BAD_REQUEST, provider=provider_id, code="noise_floor_dbfs")
        if lm_weight is not None and not 0.5 <= lm_weight <= 30.0:
            raise ProviderCallError(
                f"lm_weight={lm_weight}: must be between 0.5 and 30",
                outcome=Outcome.BAD_REQUEST, provider=provider_id, code="lm_weight")
        self.language_model = language_model
        self.phrases = tuple(phrases)
        self.noise_floor_dbfs = noise_floor_dbfs
        self.lm_weight = lm_weight
        self.second_pass = bool(second_pass)
        self._key: _DecoderKey = (language_model, self.phrases, lm_weight, self.second_pass)

    async def warm_up(self, decoders: int = 2) -> None:
        """Build the language model and load ``decoders`` decoders into the pool now."""
        loaded = [await asyncio.to_thread(_POOL.acquire, self._key) for _ in range(decoders)]
        for decoder in loaded:
            _POOL.release(decoder)

    def _condition(self, pcm: bytes, rng: np.random.Generator) -> bytes:
        """Add the comfort-noise floor (seeded per utterance, so replays are identical)."""
        if self.noise_floor_dbfs is None or not pcm:
            return pcm
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
        sigma = 32768.0 * 10.0 ** (self.noise_floor_dbfs / 20.0)
        samples += rng.normal(0.0, sigma, samples.size).astype(np.float32)
        return np.clip(samples, -32768, 32767).astype(np.int16).tobytes()

    @staticmethod
    def _begin(d: _Decoder) -> None:
        """Start an utterance from the same state whatever the decoder heard before.

        Pooled decoders adapt their cepstral mean to every utterance they decode, so a
        reused decoder would recognise the same audio differently depending on what
        earlier sessions said (and replays would diverge). Each utterance starts from the
        measured initial mean. A decoder released while its start was still in flight (a
        cancelled ``to_thread``) is still inside an utterance: end it first.
        """
        with d.lock:
            d.decoder.set_cmn(_CMN_INIT)
            try:
                d.decoder.start_utt()
            except RuntimeError:
                d.decoder.end_utt()
                d.decoder.set_cmn(_CMN_INIT)
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
        decoder = await asyncio.to_thread(_POOL.acquire, self._key)
        rng = np.random.default_rng(0)
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
                batch, pending = self._condition(pending, rng), b""
                hyp = await asyncio.to_thread(self._feed, decoder, batch)
                if hyp and hyp != last:
                    last = hyp
                    yield Transcript(text=hyp, is_final=False)
            text, confidence = await asyncio.to_thread(
                self._finish, decoder, self._condition(pending, rng))
            started = False
            yield Transcript(text=text, is_final=True, confidence=confidence, speech_final=True)
        finally:
            if started:
                self._abandon(decoder)
            _POOL.release(decoder)
