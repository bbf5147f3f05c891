"""F-024: partial/final text semantics enforced by the kernel's per-output text guard.

A real STT node (pocketsphinx on espeak-ng speech) streams monotonic partials and
one final per utterance segment through the guard untouched; a scripted node that
emits an out-of-order partial, an edit after the final and a second final is
corrected by the guard: refused events never reach the output and each refusal
is a schema-valid TelemetryLane diagnostic record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from rspp.contracts import EventType, TextPayload
from rspp.kernel import (
    AudioFormat,
    Event,
    GraphBuilder,
    Node,
    NodeRegistry,
    SessionOptions,
    TextStreamGuard,
    to_record,
)
from rspp.providers.offline import EspeakTTS
from rspp.testing import GraphHarness

pytestmark = pytest.mark.integration

Check = Callable[[Iterable[Any]], int]
PCM16 = AudioFormat(16000, 1, "pcm_s16le")


async def _speech(text: str) -> bytes:
    tts = EspeakTTS(sample_rate=16000)
    return b"".join([c.pcm async for c in tts.synthesize(text)])


def _utterance(pcm: bytes, frame_ms: int = 20) -> list[Event]:
    step = 16000 * frame_ms // 1000 * 2
    chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
    chunks += [bytes(step)] * 10  # trailing silence
    evs = [Event("audio_chunk", c, audio_format=PCM16, attrs={"speech": True})
           for c in chunks]
    evs[-1].attrs = {"speech": True, "eou": True}
    return evs


def _segment(ev: Event) -> str:
    return str((ev.attrs or {})["segment"])


async def test_real_stt_partials_are_monotonic_and_one_final_per_segment(
    check_records: Check,
) -> None:
    b = GraphBuilder("stt-text", "1.0.0").node("stt", "stt", params={"partials": True})
    b.edge("input.audio", "stt.audio").edge("stt.partial", "output.partial")
    b.edge("stt.final", "output.final")
    first = await _speech("What is the weather today")
    second = await _speech("Open the door please")
    async with GraphHarness(b.build(), session_id="stt-text") as h:
        guard = h.session.text_guard
        assert isinstance(guard, TextStreamGuard) and guard.mode == "segmented"
        await h.feed(_utterance(first), "audio")
        await h.feed(_utterance(second), "audio")
        for _ in range(600):  # finals come from a background task per utterance
            if len(h.outputs("final")) >= 2:
                break
            await asyncio.sleep(0.05)  # real time: pocketsphinx decodes in a thread
            await h.drain()
        partials, finals = h.outputs("partial"), h.outputs("final")

    assert len(finals) == 2, [f.payload for f in finals]
    segs = [_segment(f) for f in finals]
    assert len(set(segs)) == 2  # one final per segment, distinct segments
    assert {"weather"} <= set(str(finals[0].payload).split())
    assert all(f.final for f in finals) and not any(p.final for p in partials)
    assert len(partials) >= 2, "pocketsphinx produced no partial hypotheses"
    for seg, final in zip(segs, finals, strict=True):
        revs = [p.revision for p in partials if _segment(p) == seg]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)  # strictly monotonic
        assert all(r < final.revision for r in revs)  # the final is the last revision
        assert guard.is_final("stt.final->output.final", seg)
    assert [p.seq for p in partials] == sorted(p.seq for p in partials)
    assert not guard.refusals and guard.admitted == len(partials) + len(finals)
    check_records(to_record(e, session_id="stt-text", pipeline_version="1.0.0", runtime_ms=0,
                            wall_ms=0, edge_id=f"output.{port}")
                  for port, evs in (("partial", partials), ("final", finals)) for e in evs)


#: (segment, revision, final, text) the scripted recogniser emits, in this order.
SCRIPT: list[tuple[str, int, bool, str]] = [
    ("s1", 1, False, "he"),
    ("s1", 3, False, "hello wo"),
    ("s1", 2, False, "hello"),  # out of order: refused
    ("s1", 4, True, "hello world"),
    ("s1", 5, False, "hello there"),  # edit after the final: refused
    ("s1", 6, True, "hello world!"),  # second final: refused
    ("s2", 1, False, "bye"),
    ("s2", 1, False, "bye now"),  # repeated revision: refused
    ("s2", 2, True, "bye now"),
]


class ScriptedAsr(Node):
    """Emits one scripted text event per input tick (TextPayload bodies for ``s2``)."""

    type_name = "acme.scripted_asr"
    inputs = ("tick",)
    outputs = ("text",)
    streaming = "partial_and_final"

    def process(self, event: Event, port: str) -> Event:
        seg, rev, final, text = SCRIPT[int(event.payload)]
        if seg == "s2":
            body = TextPayload(text=text, is_final=final, revision=rev, segment_id=seg)
            return Event("text", body, final=final, revision=rev)
        return Event("text", text, final=final, revision=rev, attrs={"segment": seg})


class Consumer(Node):
    """A downstream (LLM-like) node: records the text it is given and passes it on."""

    type_name = "acme.text_consumer"
    inputs = ("text",)
    outputs = ("text",)
    seen: list[Event]

    def process(self, event: Event, port: str) -> Event:
        self.seen = [*getattr(self, "seen", []), event]
        return event


def _scripted_graph() -> tuple[Any, NodeRegistry]:
    reg = NodeRegistry()
    reg.register(ScriptedAsr)
    reg.register(Consumer)
    b = GraphBuilder("scripted", "1.0.0").node("asr", "acme.scripted_asr")
    b.node("llm", "acme.text_consumer")
    b.edge("input.tick", "asr.tick").edge("asr.text", "llm.text")
    b.edge("llm.text", "output.text")
    return b.build(), reg


def _view(ev: Event) -> tuple[str, int, bool, str]:
    if isinstance(ev.payload, TextPayload):
        p = ev.payload
        return p.segment_id, p.revision, p.is_final, p.text
    return _segment(ev), ev.revision, ev.final, str(ev.payload)


async def test_guard_refuses_out_of_order_partials_and_edits_after_final(
    check_records: Check,
) -> None:
    graph, reg = _scripted_graph()
    async with GraphHarness(graph, registry=reg, session_id="scripted") as h:
        text_sub = h.session.subscriptions.subscribe(EventType.TEXT)
        await h.feed([Event("tick", i) for i in range(len(SCRIPT))], "tick")
        out = [_view(e) for e in h.outputs("text")]
        consumed = [_view(e) for e in h.session.hosts["llm"].node.seen]  # type: ignore[attr-defined]
        guard = h.session.text_guard
        assert guard is not None
        refusals = list(guard.refusals)
        records = list(h.session.signals.records)

    assert out == [
        ("s1", 1, False, "he"),
        ("s1", 3, False, "hello wo"),
        ("s1", 4, True, "hello world"),
        ("s2", 1, False, "bye"),
        ("s2", 2, True, "bye now"),
    ]
    finals = [o for o in out if o[2]]
    assert sorted(o[0] for o in finals) == ["s1", "s2"]  # exactly one final per segment
    assert finals[0][3] == "hello world"  # the final text is the one first emitted
    assert [(r.segment_id, r.revision, r.rule) for r in refusals] == [
        ("s1", 2, "non_monotonic"),
        ("s1", 5, "edit_after_final"),
        ("s1", 6, "edit_after_final"),
        ("s2", 1, "non_monotonic"),
    ]
    assert "immutable" in refusals[1].message and "monotonic" in refusals[0].message
    diag = [r for r in records if r.event_id.split(":")[1] == "text_guard"]
    assert [r.reason for r in diag] == [
        "text_guard:non_monotonic:segment=s1:revision=2:final=false",
        "text_guard:edit_after_final:segment=s1:revision=5:final=false",
        "text_guard:edit_after_final:segment=s1:revision=6:final=true",
        "text_guard:non_monotonic:segment=s2:revision=1:final=false",
    ]
    # refused on the edge into the consumer: it never saw them, nor did the output
    assert consumed == out
    assert all(r.lane == "TelemetryLane" and r.node_id == "asr"
               and r.edge_id == "asr.text->llm.text" for r in diag)
    assert [r.record for r in refusals] == diag
    # subscribers see exactly the admitted stream, never a refused event
    assert [_view(d.item) for d in text_sub.deliveries if isinstance(d.item, Event)] == out
    check_records(records)


async def test_strict_mode_checks_unsegmented_text_and_off_mode_passes_all() -> None:
    stream = [(0, False), (1, False), (0, False), (2, True), (3, False), (2, False), (4, True)]

    class Plain(Node):
        type_name = "acme.plain_text"
        inputs = ("tick",)
        outputs = ("text",)

        def process(self, event: Event, port: str) -> Event:
            rev, final = stream[int(event.payload)]
            return Event("text", f"t{event.payload}", final=final, revision=rev)

    reg = NodeRegistry()
    reg.register(Plain)
    b = GraphBuilder("plain", "1.0.0").node("p", "acme.plain_text")
    b.edge("input.tick", "p.tick").edge("p.text", "output.text")
    graph = b.build()
    seen: dict[str, list[str]] = {}
    for mode in ("strict", "segmented", "off"):
        opts = SessionOptions(text_guard=mode)  # type: ignore[arg-type]
        async with GraphHarness(graph, registry=reg, options=opts) as h:
            await h.feed([Event("tick", i) for i in range(len(stream))], "tick")
            seen[mode] = [str(e.payload) for e in h.outputs("text")]
    # strict: implicit segment ~0 = t0, t1, (t2 refused), t3 final; the final closes it,
    # ~1 = t4, (t5 refused: revision 2 after 3), t6 final
    assert seen["strict"] == ["t0", "t1", "t3", "t4", "t6"]
    all_ticks = [f"t{i}" for i in range(len(stream))]
    assert seen["segmented"] == all_ticks  # no segment identity: passed unchanged
    assert seen["off"] == all_ticks
    with pytest.raises(ValueError, match=r"text_guard mode 'loose'.*'segmented'"):
        TextStreamGuard(mode="loose")  # type: ignore[arg-type]
