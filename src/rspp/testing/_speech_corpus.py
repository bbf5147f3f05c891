"""The spoken-question corpus: text, offline synthesis and word error rate.

``data/stt_corpus.tsv`` holds short questions and commands for every intent the
offline assistant answers plus open sentences, some with a pause inside the
sentence (``" | "``). :func:`speak` renders one with the product's espeak-ng TTS
(the engine ``rspp say`` uses) at a voice and speed, optionally with seeded
white noise at a signal-to-noise ratio. The WER benchmark, the turn-latency
benchmark and the voice tests all read this one corpus.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CORPUS_PATH",
    "PAUSE_MS",
    "Utterance",
    "load_corpus",
    "normalise_words",
    "speak",
    "word_errors",
]

CORPUS_PATH = Path(__file__).parent / "data" / "stt_corpus.tsv"
#: the pause inside a sentence marked with ``|`` (a hesitation, shorter than a turn end)
PAUSE_MS = 400
_EDGE_MS = 200  # silence before and after the utterance


@dataclass(frozen=True, slots=True)
class Utterance:
    intent: str
    text: str  # as written, ``|`` marks a pause

    @property
    def words(self) -> str:
        """The reference transcript (normalised words, pauses removed)."""
        return normalise_words(self.text)

    @property
    def has_pause(self) -> bool:
        return "|" in self.text


def load_corpus(path: Path = CORPUS_PATH) -> list[Utterance]:
    """Every utterance of the corpus file (``INTENT<TAB>TEXT`` lines, ``#`` comments)."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        intent, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise ValueError(f"{path}:{number}: expected INTENT<TAB>TEXT, got {line!r}")
        out.append(Utterance(intent.strip(), text.strip()))
    return out


def normalise_words(text: str) -> str:
    """Lower-case words for scoring: letters, digits and apostrophes only."""
    keep = "".join(c if c.isalnum() or c == "'" else " " for c in text.lower())
    return " ".join(keep.split())


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after normalising both."""
    ref, hyp = normalise_words(reference).split(), normalise_words(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
            prev, row[j] = row[j], cur
    return row[len(hyp)], len(ref)


def _silence(ms: int, rate: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def speak(utterance: Utterance, *, voice: str = "en-us", words_per_minute: int = 160,
          snr_db: float | None = None, sample_rate: int = 16000, seed: int = 0) -> bytes:
    """PCM s16le mono of ``utterance`` spoken by espeak-ng (blocking).

    ``snr_db`` adds white noise at that signal-to-noise ratio (seeded by the text
    and ``seed``, so every run hears the same noise).
    """
    from rspp.providers.offline import EspeakEngine, resample_pcm

    engine = EspeakEngine.get()
    parts = [_silence(_EDGE_MS, sample_rate)]
    for i, piece in enumerate(utterance.text.split("|")):
        if i:
            parts.append(_silence(PAUSE_MS, sample_rate))
        raw = engine.synth(piece.strip(), voice=voice, words_per_minute=words_per_minute)
        pcm = resample_pcm(raw, engine.sample_rate, sample_rate)
        parts.append(np.frombuffer(pcm, dtype=np.int16))
    parts.append(_silence(_EDGE_MS, sample_rate))
    audio = np.concatenate(parts)
    if snr_db is None:
        return audio.tobytes()
    signal = audio.astype(np.float64)
    voiced = signal[np.abs(signal) > 0]
    level = float(np.sqrt(np.mean(voiced * voiced))) if voiced.size else 0.0
    rng = np.random.default_rng([zlib.crc32(utterance.text.encode()), seed])
    noisy = signal + rng.normal(0.0, level / 10.0 ** (snr_db / 20.0), signal.size)
    return np.clip(noisy, -32768, 32767).astype(np.int16).tobytes()
