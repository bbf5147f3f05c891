"""End of user speech -> first reply audio with the offline pipeline, real-time input.

Every utterance of the spoken corpus (``rspp.testing``; espeak-ng, en-us, 160 wpm)
runs as one session of ``pipelines/examples/voice_assistant.yaml`` through the
local runner with real engines and real-time pacing, recording an L2 timeline.
From the timeline, per turn (session milliseconds):

* end of speech: the input frame right after the last frame the energy VAD calls
  speech (-40 dBFS, the spec's threshold);
* endpointing wait: end of speech -> ``turn_open_proposed`` (end of utterance);
* STT final: -> the final transcript leaves the STT node;
* LLM first token: -> the first LLM text event;
* TTS first audio: -> the first reply audio chunk (sentence segmentation + synthesis);
* total: end of speech -> first reply audio.

Prints p50/p95 of each for the example spec with adaptive endpointing and, without
``--quick``, as shipped (plain 500 ms silence endpointing); the last line is one
JSON object (``p50_ms``/``p95_ms``: adaptive). ``--quick``: 8 utterances, adaptive only.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, percentile, quick_parser

from rspp.contracts import RecordingLevel
from rspp.runner import RunOptions, run_local
from rspp.testing import Utterance, load_corpus, speak
from rspp.transports import write_wav

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
RATE = 16000
FRAME = RATE // 50  # the loopback transport's 20 ms frames
THRESHOLD_DBFS = -40.0
EXAMPLE_VAD = "params: {engine: energy, endpointing: silence, silence_ms: 500}"
ADAPTIVE_VAD = "params: {engine: energy, endpointing: adaptive, complete_silence_ms: 250, " \
               "silence_ms: 600}"
PARTS = ("endpointing_wait", "stt_final", "llm_first_token", "tts_first_audio", "total")


def speech_end_sample(pcm: bytes) -> int:
    """Start of the first 20 ms frame after the last one above the VAD threshold."""
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    last = 0
    for k in range(len(samples) // FRAME):
        frame = samples[k * FRAME:(k + 1) * FRAME]
        rms = float(np.sqrt(np.mean(frame * frame)))
        if rms > 0 and 20 * np.log10(rms / 32768.0) > THRESHOLD_DBFS:
            last = k
    return (last + 1) * FRAME


def split(timeline: Path, end_sample: int) -> dict[str, float] | None:
    """The latency split of the first turn in ``timeline`` (None: no reply)."""
    speech_end = eou = final = llm = audio = None
    for line in timeline.read_text().splitlines():
        item = json.loads(line)
        rec, kind = item["record"], item["kind"]
        ts = rec.get("runtime_timestamp_ms")
        edge = rec.get("edge_id")
        if kind == "event_record" and edge == "input.audio" and speech_end is None \
                and (rec.get("media_time") or {}).get("sample_index") == end_sample:
            speech_end = ts
        elif kind == "control_signal" and rec.get("signal") == "turn_open_proposed" \
                and eou is None:
            eou = ts
        elif kind == "event_record" and edge == "stt.final" and final is None:
            final = ts
        elif kind == "event_record" and edge == "llm.text" and llm is None:
            llm = ts
        elif kind == "event_record" and edge == "output.audio" and audio is None \
                and rec.get("payload_class") == "audio_raw":
            audio = ts
    if None in (speech_end, eou, final, llm, audio):
        return None
    assert speech_end is not None and eou is not None and final is not None
    assert llm is not None and audio is not None
    return {"endpointing_wait": eou - speech_end, "stt_final": final - eou,
            "llm_first_token": llm - final, "tts_first_audio": audio - llm,
            "total": audio - speech_end}


async def measure(spec: Path, corpus: list[Utterance], work: Path) -> dict[str, Any]:
    rows: list[dict[str, float]] = []
    failed: list[str] = []
    for i, utt in enumerate(corpus):
        pcm = speak(utt)
        wav, tl = work / f"u{i}.wav", work / f"u{i}.jsonl"
        write_wav(wav, pcm, RATE)
        await run_local(RunOptions(spec=spec, input=wav, timeline=tl, real_time=True,
                                   record_level=RecordingLevel.L2, session_id=f"lat-{i}"))
        row = split(tl, speech_end_sample(pcm))
        if row is None:
            failed.append(utt.text)
            continue
        rows.append(row)
        print(f"  {utt.text:45s} " + " ".join(f"{k}={row[k]:5.0f}" for k in PARTS),
              flush=True)
    out: dict[str, Any] = {"turns": len(rows), "no_reply": failed}
    for part in PARTS:
        values = [r[part] for r in rows]
        out[part] = {"p50": percentile(values, 50), "p95": percentile(values, 95),
                     "mean": round(sum(values) / max(1, len(values)), 1)}
    return out


async def main() -> None:
    args = quick_parser(__doc__).parse_args()
    corpus = load_corpus()
    if args.quick:  # the first utterance of each of 8 intents
        firsts: dict[str, Utterance] = {}
        for utt in corpus:
            firsts.setdefault(utt.intent, utt)
        corpus = list(firsts.values())[:8]
    text = SPEC.read_text()
    if EXAMPLE_VAD not in text:
        raise SystemExit(f"{SPEC}: the vad params changed; update EXAMPLE_VAD in {__file__}")
    variants = {"adaptive": text.replace(EXAMPLE_VAD, ADAPTIVE_VAD)}
    if not args.quick:
        variants["silence500"] = text
    result: dict[str, Any] = {"utterances": len(corpus), "policies": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, spec_text in variants.items():
            spec = work / f"{name}.yaml"
            spec.write_text(spec_text)
            print(f"{name}:", flush=True)
            result["policies"][name] = await measure(spec, corpus, work)
            total = result["policies"][name]["total"]
            print(f"{name}: end of speech -> first reply audio p50 {total['p50']:.0f} ms, "
                  f"p95 {total['p95']:.0f} ms", flush=True)
    adaptive = result["policies"]["adaptive"]["total"]
    result["p50_ms"], result["p95_ms"] = adaptive["p50"], adaptive["p95"]
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
