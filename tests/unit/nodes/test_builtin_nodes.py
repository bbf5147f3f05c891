"""Built-in nodes without audio engines: registry (F-010), endpointing (F-017), text nodes
(F-118, NF-014), resampler, VAD boundaries and explicit end of utterance (F-042)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pytest

import rspp.nodes
from rspp.kernel import AudioFormat, Event, GraphBuilder, SessionActor, default_registry
from rspp.nodes import (
    ENDPOINTING_POLICIES,
    HangoverEndpointer,
    SilenceEndpointer,
    make_endpointer,
)
from rspp.spec import BUILTIN_NODE_TYPES

pytestmark = pytest.mark.unit


def test_every_builtin_type_is_registered_with_the_catalog_ports() -> None:
    """F-010: the spec catalog's built-in type names resolve, with identical port names."""
    for name in BUILTIN_NODE_TYPES.names():
        sig = BUILTIN_NODE_TYPES.signature(name)
        assert sig is not None
        cls = default_registry.resolve(name)
        assert cls.inputs == tuple(p.name for p in sig.inputs), name
        assert cls.outputs == tuple(p.name for p in sig.outputs), name
    for cls in rspp.nodes.BUILTIN_NODES:
        assert cls.is_async() == bool(BUILTIN_NODE_TYPES.signature(cls.type_name).is_async) or \
            cls.type_name == "error_speech"


def run_policy(ep: object, pattern: Iterable[tuple[bool, int]]) -> list[tuple[str, int]]:
    out, t = [], 0
    for speech, frames in pattern:
        for _ in range(frames):
            t += 20
            b = ep.update(speech, 20.0)  # type: ignore[attr-defined]
            if b is not None:
                out.append((b, t))
    return out


PATTERN = [(False, 10), (True, 40), (False, 20), (True, 40), (False, 50)]  # 400 ms pause


def test_endpointing_policies_are_swappable_and_change_boundaries() -> None:
    """F-017: same VAD decisions, different policy -> different turn boundaries."""
    short = run_policy(make_endpointer({"endpointing": "silence", "silence_ms": 300}), PATTERN)
    long = run_policy(make_endpointer({"endpointing": "silence", "silence_ms": 500}), PATTERN)
    assert [b for b, _ in short] == ["start", "end", "start", "end"]
    assert [b for b, _ in long] == ["start", "end"]
    hang = run_policy(HangoverEndpointer(silence_ms=300, per_second_ms=200, max_silence_ms=900),
                      PATTERN)
    assert [b for b, _ in hang] == ["start", "end"]  # 0.8 s of speech stretches the window
    assert set(ENDPOINTING_POLICIES) >= {"silence", "hangover"}
    with pytest.raises(ValueError, match="endpointing policy 'nope' unknown"):
        make_endpointer({"endpointing": "nope"})


def test_explicit_end_forces_the_boundary() -> None:
    ep = SilenceEndpointer(silence_ms=5000)
    run_policy(ep, [(True, 10)])
    assert ep.in_speech and ep.force_end() and not ep.in_speech
    assert not ep.force_end()


def tone(ms: int, rate: int = 16000, amp: float = 8000.0) -> bytes:
    n = rate * ms // 1000
    t = np.arange(n) / rate
    return (amp * np.sin(2 * math.pi * 220 * t)).astype(np.int16).tobytes()


def frames(pcm: bytes, rate: int = 16000) -> list[bytes]:
    n = rate // 50 * 2
    return [pcm[i:i + n] for i in range(0, len(pcm), n)]


async def run_graph(graph: object, events: list[tuple[str, Event]]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    session = SessionActor(graph, session_id="unit",  # type: ignore[arg-type]
                           output_sink=lambda p, e: out.setdefault(p, []).append(e))
    async with session:
        for port, ev in events:
            session.push(ev, port)
            await session.drain()
    return out


async def test_vad_marks_frames_and_emits_boundaries_in_stream_order() -> None:
    g = (GraphBuilder("vad").node("vad", "vad", params={"silence_ms": 200})
         .edge("input.audio", "vad.audio").edge("vad.audio", "output.audio")
         .edge("vad.vad", "output.vad").build())
    pcm = b"\x00\x00" * 3200 + tone(600) + b"\x00\x00" * 8000
    fmt = AudioFormat(16000)
    evs = [("audio", Event("audio_chunk", f, audio_format=fmt, sample_index=i * 320))
           for i, f in enumerate(frames(pcm))]
    out = await run_graph(g, evs)
    states = [e.payload["state"] for e in out["vad"]]
    assert states == ["start", "end"]
    audio = out["audio"]
    assert len(audio) == len(evs)
    eou = [i for i, e in enumerate(audio) if e.attrs and e.attrs["eou"]]
    assert len(eou) == 1
    end_frame = eou[0]
    assert all(e.attrs["speech"] for e in audio[10 + 3:end_frame + 1])
    assert out["vad"][1].payload["sample_index"] == audio[end_frame].sample_index


async def test_client_end_of_utterance_ends_speech_without_silence() -> None:
    """F-042: an in-band end_of_utterance event finalises at once (no silence needed)."""
    g = (GraphBuilder("eou").node("vad", "vad", params={"silence_ms": 5000})
         .edge("input.audio", "vad.audio").edge("vad.audio", "output.audio")
         .edge("vad.vad", "output.vad").build())
    fmt = AudioFormat(16000)
    evs = [("audio", Event("audio_chunk", f, audio_format=fmt)) for f in frames(tone(400))]
    evs.append(("audio", Event(rspp.nodes.EOU_KIND, None, audio_format=fmt)))
    out = await run_graph(g, evs)
    assert [e.payload["state"] for e in out["vad"]] == ["start", "end"]
    assert out["vad"][1].payload["reason"] == "explicit_end_of_utterance"
    assert out["audio"][-1].attrs["eou"] is True and out["audio"][-1].payload == b""


async def test_segmenter_groups_tokens_and_flushes_on_end_of_stream() -> None:
    g = (GraphBuilder("seg").node("seg", "sentence_segmenter", params={"min_chars": 8})
         .edge("input.text", "seg.text").edge("seg.text", "output.text").build())
    tokens = ["Hi.", " Two", " plus", " two", " is", " four.", " Bye", " now"]
    evs = [("text", Event("text", t, final=False, turn_id="t", attrs={"token": True}))
           for t in tokens]
    evs.append(("text", Event("text", "", turn_id="t", attrs={"eos": True})))
    out = await run_graph(g, evs)
    texts = [e.payload for e in out["text"]]
    assert texts == ["Hi. Two plus two is four.", "Bye now", ""]
    assert out["text"][-1].attrs["eos"] is True


async def test_redaction_and_compliance_filter_before_output_and_audit() -> None:
    """F-118 / NF-014: PII is replaced, blocked terms rewritten, each action audited."""
    g = (GraphBuilder("pii").node("red", "redaction", params={"patterns": ["email", "phone",
                                                                          "card"]})
         .node("comp", "compliance", params={"blocked_terms": ["password"]})
         .edge("input.text", "red.text").edge("red.text", "comp.text")
         .edge("comp.text", "output.text").build())
    msgs = ["Mail me at jane.doe@example.com or call +1 415 555 0134.",
            "My card is 4111 1111 1111 1111.", "The password is hunter2.", "Nothing here."]
    session_out: dict[str, list[Event]] = {}
    session = SessionActor(g, session_id="pii",
                           output_sink=lambda p, e: session_out.setdefault(p, []).append(e))
    async with session:
        for m in msgs:
            session.push(Event("text", m, turn_id="t1"), "text")
        await session.drain()
    texts = [e.payload for e in session_out["text"]]
    assert "jane.doe@example.com" not in texts[0] and "[redacted email]" in texts[0]
    assert "555 0134" not in texts[0] and "[redacted phone]" in texts[0]
    assert "4111" not in texts[1] and "[redacted card]" in texts[1]
    assert texts[2] == "I can not talk about that."
    assert texts[3] == "Nothing here."
    audits = [r.reason for r in session.signals.records if getattr(r, "reason", None)
              and str(r.reason).startswith(("redaction:", "compliance:"))]
    assert "redaction:email:1" in audits and "redaction:card:1" in audits
    assert "compliance:block:1" in audits
    assert not any("jane" in str(r) or "hunter2" in str(r) for r in session.signals.records)


def test_redaction_rejects_unknown_pattern_names() -> None:
    g = (GraphBuilder("bad").node("red", "redaction", params={"patterns": ["dna"]})
         .edge("input.text", "red.text").edge("red.text", "output.text").build())
    with pytest.raises(Exception, match="redaction patterns \\['dna'\\] unknown"):
        SessionActor(g, session_id="bad")


async def test_resampler_converts_rate_and_channels_streaming() -> None:
    g = (GraphBuilder("rs").node("rs", "resampler", params={"rate_hz": 16000})
         .edge("input.audio", "rs.audio").edge("rs.audio", "output.audio").build())
    stereo = np.repeat(np.frombuffer(tone(1000, rate=48000), dtype=np.int16), 2).tobytes()
    fmt = AudioFormat(48000, channels=2)
    chunk = 48000 * 2 * 2 // 50
    evs = [("audio", Event("audio_chunk", stereo[i:i + chunk], audio_format=fmt))
           for i in range(0, len(stereo), chunk)]
    out = await run_graph(g, evs)
    pcm = b"".join(e.payload for e in out["audio"])
    assert all(e.audio_format.sample_rate == 16000 and e.audio_format.channels == 1
               for e in out["audio"])
    assert 15000 <= len(pcm) // 2 <= 16000  # ~1 s at 16 kHz (streaming resampler delay)
    assert [e.sample_index for e in out["audio"]] == sorted(e.sample_index for e in out["audio"])


async def test_turn_detector_ignores_blips_and_reports_real_utterances() -> None:
    """F-017: the turn detector's own policy decides which VAD utterances become turns."""
    g = (GraphBuilder("td").node("vad", "vad", params={"silence_ms": 200, "min_speech_ms": 40})
         .node("td", "turn_detector", params={"min_utterance_ms": 300})
         .edge("input.audio", "vad.audio").edge("vad.vad", "td.vad")
         .edge("td.turn", "output.turn").build())
    pcm = tone(100) + b"\x00\x00" * 8000 + tone(600) + b"\x00\x00" * 8000
    fmt = AudioFormat(16000)
    evs = [("audio", Event("audio_chunk", f, audio_format=fmt)) for f in frames(pcm)]
    session = SessionActor(g, session_id="td")
    out: list[Event] = []
    session.output_sink = lambda p, e: out.append(e)
    async with session:
        for port, ev in evs:
            session.push(ev, port)
            await session.drain()
    turns = [e for e in out if e.kind == "turn_end_detected"]
    assert len(turns) == 1 and turns[0].payload["speech_ms"] >= 600
    audits = [r.reason for r in session.signals.records if getattr(r, "reason", None)]
    assert any(str(a).startswith("turn_detector:ignored_short_utterance") for a in audits)
