"""Word error rate of the offline STT per engine configuration on the spoken corpus.

The corpus (``rspp.testing`` ``data/stt_corpus.tsv``: questions and commands for
every intent of the offline assistant plus open sentences, some with a pause
inside) is spoken by the product's espeak-ng TTS at two voices and two speeds,
each clean and with white noise at 20 dB SNR (seeded), and streamed in 20 ms
chunks through ``PocketsphinxSTT`` under each configuration. Prints one line
per configuration and condition, then one JSON object: ``wer`` (the default
configuration over every condition) and per-configuration figures.
``--quick``: one voice and speed, clean and noisy, the default configuration only.
``general-no-floor`` is the configuration before the domain model (pocketsphinx defaults).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, quick_parser

from rspp.providers import AudioChunk
from rspp.providers.offline import PocketsphinxSTT
from rspp.testing import Utterance, load_corpus, speak, word_errors

#: name -> PocketsphinxSTT options; DEFAULT is what pipelines/examples/voice_assistant.yaml sets
CONFIGS: dict[str, dict[str, Any]] = {
    "example": {"language_model": "domain", "lm_weight": 8.0, "noise_floor_dbfs": -50,
                "second_pass": False},
    "domain-lw8": {"language_model": "domain", "lm_weight": 8.0, "noise_floor_dbfs": -50},
    "domain": {"language_model": "domain"},
    "domain-no-floor": {"language_model": "domain", "noise_floor_dbfs": None},
    "general": {"language_model": "general"},
    "general-no-floor": {"language_model": "general", "noise_floor_dbfs": None},
}
DEFAULT = "example"
VOICES = ("en-us", "en")
SPEEDS = (140, 190)
SNR_DB = 20.0
_CHUNK = 640  # 20 ms at 16 kHz, as the STT node forwards frames


async def transcribe(stt: PocketsphinxSTT, pcm: bytes) -> str:
    async def chunks() -> AsyncIterator[AudioChunk]:
        for i in range(0, len(pcm), _CHUNK):
            yield AudioChunk(pcm[i : i + _CHUNK], 16000)

    final = ""
    async for tr in stt.stream(chunks()):
        if tr.is_final:
            final = tr.text
    return final


async def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--configs", default=None,
                        help=f"comma-separated subset of {list(CONFIGS)}")
    args = parser.parse_args()
    corpus = load_corpus()
    voices, speeds = (VOICES[:1], (160,)) if args.quick else (VOICES, SPEEDS)
    configs = [DEFAULT] if args.quick else list(CONFIGS)
    if args.configs:
        configs = [c.strip() for c in args.configs.split(",")]
        unknown = [c for c in configs if c not in CONFIGS]
        if unknown:
            parser.error(f"--configs: {unknown[0]!r} unknown; use {list(CONFIGS)}")
    if DEFAULT not in configs:
        configs.insert(0, DEFAULT)
    conditions = [(v, s, snr) for v in voices for s in speeds for snr in (None, SNR_DB)]
    audio: dict[tuple[str, int, float | None], list[tuple[Utterance, bytes]]] = {}
    for cond in conditions:
        voice, wpm, snr = cond
        audio[cond] = [(u, await asyncio.to_thread(speak, u, voice=voice, words_per_minute=wpm,
                                                     snr_db=snr)) for u in corpus]
    result: dict[str, Any] = {"corpus_utterances": len(corpus), "conditions": len(conditions),
                              "configs": {}}
    for name in configs:
        stt = PocketsphinxSTT(**CONFIGS[name])
        await transcribe(stt, audio[conditions[0]][0][1])  # load the decoder before timing
        errors = words = 0
        in_errors = in_words = 0
        per_condition: dict[str, float] = {}
        started = time.perf_counter()
        for cond in conditions:
            c_err = c_words = 0
            for utt, pcm in audio[cond]:
                e, n = word_errors(utt.words, await transcribe(stt, pcm))
                c_err, c_words = c_err + e, c_words + n
                if utt.intent != "open":
                    in_errors, in_words = in_errors + e, in_words + n
            label = f"{cond[0]}/{cond[1]}wpm/{'clean' if cond[2] is None else f'snr{cond[2]:g}'}"
            per_condition[label] = round(c_err / c_words, 4)
            errors, words = errors + c_err, words + c_words
            print(f"{name:18s} {label:22s} WER {c_err / c_words:6.1%}", flush=True)
        elapsed = time.perf_counter() - started
        result["configs"][name] = {
            "options": CONFIGS[name], "wer": round(errors / words, 4),
            "wer_intents": round(in_errors / max(1, in_words), 4),
            "wer_open": round((errors - in_errors) / max(1, words - in_words), 4),
            "per_condition": per_condition, "words": words,
            "decode_s_per_utterance": round(elapsed / (len(conditions) * len(corpus)), 3),
        }
        print(f"{name:18s} overall WER {errors / words:6.1%}", flush=True)
    result["default"] = DEFAULT
    result["wer"] = result["configs"][DEFAULT]["wer"]
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
