"""Per-turn latency anchors shared by the ``rspp run`` table and the SLO gates."""

from __future__ import annotations

import pytest

from rspp.contracts import SPEECH_END_AUDIT, Emitter, Lane, MediaTime, PayloadClass, SignalName
from rspp.observability import TimelineBuilder, as_lines, evaluate_gates, turn_latencies

pytestmark = pytest.mark.unit


def _session(speech_end_sample: int | None) -> TimelineBuilder:
    """10 input frames of 20 ms (320 samples), speech ends in frame 4 (t=80 ms)."""
    b = TimelineBuilder()
    for i in range(10):
        b.event(None, payload_class=PayloadClass.AUDIO_RAW, transport_sequence=i,
                node_id="ingress", media_time=MediaTime(sample_index=320 * i))
        if i == 9 and speech_end_sample is not None:
            b.event(None, lane=Lane.TELEMETRY, payload_class=PayloadClass.METADATA,
                    node_id="vad", reason=f"{SPEECH_END_AUDIT}{speech_end_sample}")
        b.advance(20)
    b.advance(100)  # the endpointing wait goes on after the last frame
    b.signal(SignalName.TURN_OPEN_PROPOSED, Emitter.RK_02)
    b.advance(10)
    b.signal(SignalName.TURN_OPEN, Emitter.RK_03, "t1")
    b.advance(400)
    b.event("t1", node_id="llm")
    b.advance(190)
    b.signal(SignalName.PLAYBACK_STARTED, Emitter.RK_22, "t1")
    b.signal(SignalName.COMMIT, Emitter.RK_03, "t1")
    b.signal(SignalName.CLOSE, Emitter.RK_03, "t1")
    return b


def test_speech_end_is_the_arrival_of_the_last_voiced_frame() -> None:
    lines = as_lines(_session(speech_end_sample=1600).lines())
    (lat,) = turn_latencies(lines)
    t0 = lines[0].record["runtime_timestamp_ms"]
    # sample 1599 is in frame 4 (samples 1280..1599), which arrived at t=80 ms
    assert (lat.speech_end_ms, lat.speech_end_source) == (t0 + 80, "vad")
    assert (lat.proposal_ms, lat.open_ms, lat.first_audio_ms) == (t0 + 300, t0 + 310, t0 + 900)
    assert lat.speech_end_to_open_ms == 230 and lat.speech_end_to_first_audio_ms == 820
    assert lat.open_to_first_audio_ms == 590 and lat.decision_ms == 10
    assert lat.open_to_first_output_ms == 400
    gates = {g.gate: g for g in evaluate_gates(lines).gates}
    assert gates[7].p50 == 820.0 and gates[1].p50 == 10.0 and gates[2].p50 == 400.0


def test_without_a_vad_record_speech_end_is_the_last_frame_before_the_proposal() -> None:
    lines = as_lines(_session(speech_end_sample=None).lines())
    (lat,) = turn_latencies(lines)
    t0 = lines[0].record["runtime_timestamp_ms"]
    assert (lat.speech_end_ms, lat.speech_end_source) == (t0 + 180, "ingress")
    assert lat.speech_end_to_first_audio_ms == 720
