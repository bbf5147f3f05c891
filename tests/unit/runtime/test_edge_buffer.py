"""Edge buffers: bounds, strategies, watermarks, flow control, sync drop.

Catalog: F-043, F-044, F-053, F-143..F-148, NF-004."""

from __future__ import annotations

import asyncio

import pytest

from rspp.contracts import Lane, SignalName
from rspp.kernel import BufferConfig, BufferConfigError, EdgeBuffer, Event, SignalLog, VirtualClock
from rspp.kernel._buffer import ACCEPTED, BLOCKED, DROPPED, MERGED

pytestmark = pytest.mark.unit


def make(cfg: BufferConfig, clock: VirtualClock | None = None) -> tuple[EdgeBuffer, SignalLog]:
    clock = clock or VirtualClock()
    counter = iter(range(10**9))
    log = SignalLog("s1", "p@1.0.0", clock, lambda: next(counter))
    return EdgeBuffer("a.out->b.in", cfg, log, clock), log


def ev(seq: int, kind: str = "audio_chunk", size: int = 10, **kw: object) -> Event:
    e = Event(kind, b"x" * size, **kw)  # type: ignore[arg-type]
    e.seq = seq
    return e


def data_seqs(buf: EdgeBuffer) -> list[int]:
    return [e.seq for e in buf.data]


def test_items_bound_drop_oldest_leaves_notice_with_range(check_records) -> None:
    buf, log = make(BufferConfig(max_items=3, drop_from="oldest"))
    for i in range(6):
        buf.offer(ev(i))
    buf.flush_notices()
    assert data_seqs(buf) == [3, 4, 5]
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert (notice.seq_range.start, notice.seq_range.end) == (0, 2)
    assert notice.reason == "max_queue_items_exceeded" and notice.edge_id == "a.out->b.in"
    assert buf.stats.dropped == 3 and buf.stats.max_depth == 3
    check_records(log.records)


def test_items_bound_drop_newest() -> None:
    buf, log = make(BufferConfig(max_items=3, drop_from="newest"))
    results = [buf.offer(ev(i)) for i in range(5)]
    buf.flush_notices()
    assert results == [ACCEPTED] * 3 + [DROPPED] * 2
    assert data_seqs(buf) == [0, 1, 2]
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert (notice.seq_range.start, notice.seq_range.end) == (3, 4)


def test_bytes_bound_is_enforced_independently() -> None:
    buf, log = make(BufferConfig(max_items=100, max_bytes=250))
    for i in range(5):
        buf.offer(ev(i, size=100))
    buf.flush_notices()
    assert buf.nbytes <= 250 and data_seqs(buf) == [3, 4]
    assert {n.reason for n in log.of(SignalName.DROP_NOTICE)} == {"max_queue_bytes_exceeded"}


def test_time_in_queue_bound_expires_stale_items() -> None:
    clock = VirtualClock()
    buf, log = make(BufferConfig(max_items=100, max_queue_ms=50), clock)
    buf.offer(ev(0))
    buf.offer(ev(1))
    clock.advance(60)
    buf.offer(ev(2))
    buf.flush_notices()
    assert data_seqs(buf) == [2]
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert notice.reason == "max_queue_ms_exceeded"
    assert (notice.seq_range.start, notice.seq_range.end) == (0, 1)
    assert buf.stats.expired == 2


def test_lossless_buffer_never_expires_and_blocks_when_full() -> None:
    """A file-fed session: a slow consumer is not staleness; a full buffer blocks (NF-004)."""
    clock = VirtualClock()
    buf, log = make(BufferConfig(max_items=2, max_queue_ms=50, max_latency_ms=30), clock)
    buf.lossless = buf.blocking = True
    buf.note_service(100_000_000)  # a consumer needing 100 ms per item
    assert [buf.offer(ev(i)) for i in range(3)] == [ACCEPTED, ACCEPTED, BLOCKED]
    clock.advance(10_000)
    assert buf.pop() is not None and buf.pop() is not None
    buf.flush_notices()
    assert log.of(SignalName.DROP_NOTICE) == [] and buf.stats.dropped == 0
    assert buf.stats.delivered == 2 and buf.stats.blocked == 1


def test_latency_contribution_bound_uses_consumer_service_time() -> None:
    buf, log = make(BufferConfig(max_items=100, max_latency_ms=30))
    buf.note_service(10_000_000)  # consumer needs 10 ms per item
    for i in range(6):
        buf.offer(ev(i))
    buf.flush_notices()
    assert len(buf.data) <= 4  # 3 queued items already contribute 30 ms
    assert {n.reason for n in log.of(SignalName.DROP_NOTICE)} == {
        "max_latency_contribution_exceeded"
    }


def test_block_requires_max_block_time() -> None:
    with pytest.raises(BufferConfigError, match="max_block_ms"):
        BufferConfig(strategy="block")


async def test_block_is_capped_then_sheds_deterministically() -> None:
    clock = VirtualClock()
    buf, log = make(BufferConfig(strategy="block", max_items=2, max_block_ms=40), clock)
    assert [buf.offer(ev(i)) for i in range(3)] == [ACCEPTED, ACCEPTED, BLOCKED]
    t0 = clock.monotonic_ns()
    got_space = await buf.wait_space(40)
    assert not got_space
    assert (clock.monotonic_ns() - t0) // 1_000_000 == 40  # waited exactly the cap
    assert buf.shed(ev(2), "max_block_time_exceeded") == ACCEPTED  # sheds the oldest
    buf.flush_notices()
    assert data_seqs(buf) == [1, 2]
    assert log.of(SignalName.DROP_NOTICE)[0].reason == "max_block_time_exceeded"


async def test_block_resumes_when_consumer_frees_space() -> None:
    buf, _ = make(BufferConfig(strategy="block", max_items=1, max_block_ms=1000))
    buf.offer(ev(0))
    assert buf.offer(ev(1)) == BLOCKED
    waiter = asyncio.ensure_future(buf.wait_space(1000))
    await asyncio.sleep(0)
    assert buf.pop() is not None
    assert await waiter is True
    assert buf.offer(ev(1)) == ACCEPTED


def test_latest_only_keeps_newest() -> None:
    buf, log = make(BufferConfig(strategy="latest_only"))
    for i in range(4):
        buf.offer(ev(i))
    buf.flush_notices()
    assert data_seqs(buf) == [3]
    assert log.of(SignalName.DROP_NOTICE)[0].reason == "superseded_latest_only"


def test_sample_keeps_every_nth_under_overflow() -> None:
    buf, _ = make(BufferConfig(strategy="sample", max_items=2, sample_every=2))
    for i in range(8):
        buf.offer(ev(i))
    # 0,1 fill; overflow arrivals 2..7: every 2nd is admitted (replacing the oldest)
    assert data_seqs(buf) == [5, 7]
    assert buf.stats.dropped == 6


def test_merge_coalesces_partials_and_keeps_final(check_records) -> None:
    buf, log = make(BufferConfig(strategy="merge", max_items=10))
    texts = ["hel", "hello", "hello wor", "hello world"]
    for i, t in enumerate(texts):
        e = ev(i, kind="text", final=False, revision=i, attrs={"segment": "s1"})
        e.payload = t
        assert buf.offer(e) == (ACCEPTED if i == 0 else MERGED)
    final = ev(4, kind="text", final=True, revision=4, attrs={"segment": "s1"})
    final.payload = "hello world."
    # the final supersedes the queued partial; a later segment is never merged into it
    assert buf.offer(final) == MERGED
    nxt = ev(5, kind="text", final=False, attrs={"segment": "s2"})
    assert buf.offer(nxt) == ACCEPTED
    buf.flush_notices()
    assert [(e.payload, e.final) for e in buf.data] == [
        ("hello world.", True), (nxt.payload, False)]
    assert buf.data[0].merged_from == ("0", "1", "2", "3", "4")
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert notice.reason == "merged_coalesced"
    assert (notice.seq_range.start, notice.seq_range.end) == (0, 3)
    assert buf.stats.merged == 4
    check_records(log.records)


def test_control_lane_served_first_and_never_dropped() -> None:
    buf, _ = make(BufferConfig(max_items=2))
    for i in range(5):
        buf.offer(ev(i))
    buf.offer(ev(90, lane=Lane.TELEMETRY))
    buf.offer(ev(99, kind="cancel", lane=Lane.CONTROL))
    order = []
    while (e := buf.pop()) is not None:
        order.append(e.seq)
    assert order == [99, 3, 4, 90]


def test_telemetry_lane_sheds_without_touching_data() -> None:
    buf, log = make(BufferConfig(max_items=10, telemetry_max_items=2, telemetry_handling="drop"))
    for i in range(4):
        buf.offer(ev(100 + i, lane=Lane.TELEMETRY))
    for i in range(3):
        buf.offer(ev(i))
    buf.flush_notices()
    assert len(buf.telemetry) == 2 and data_seqs(buf) == [0, 1, 2]
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert notice.target_lane == Lane.TELEMETRY and notice.reason == "telemetry_overflow"


def test_watermarks_emit_signals_and_run_plan_action(check_records) -> None:
    buf, log = make(BufferConfig(max_items=100, watermark_items=(5, 2), watermark_action="drop"))
    for i in range(5):
        buf.offer(ev(i))
    high, low = log.of(SignalName.WATERMARK)
    assert high.reason == "high_watermark_crossed:queue_items:drop"
    assert high.edge_id == "a.out->b.in" and high.target_lane == Lane.DATA
    assert data_seqs(buf) == [3, 4]  # action "drop" shed down to the low watermark
    assert low.reason == "low_watermark_crossed:queue_items"
    check_records(log.records)


def test_watermark_degrade_action_emits_degrade(check_records) -> None:
    buf, log = make(BufferConfig(max_items=100, watermark_items=(3, 1), watermark_action="degrade"))
    seen = []
    buf.on_pressure.append(lambda b, action: seen.append(action))
    for i in range(3):
        buf.offer(ev(i))
    assert [s.signal for s in log.records] == [SignalName.WATERMARK, SignalName.DEGRADE]
    assert seen == ["degrade"] and len(buf.data) == 3
    check_records(log.records)


def test_flow_signal_mode_xoff_xon(check_records) -> None:
    buf, log = make(BufferConfig(max_items=100, flow_mode="signal", flow_high=4, flow_low=1))
    results = [buf.offer(ev(i)) for i in range(6)]
    assert results == [ACCEPTED] * 4 + [BLOCKED] * 2
    assert [s.signal for s in log.records] == [SignalName.FLOW_XOFF]
    for _ in range(3):
        buf.pop()
    assert [s.signal for s in log.records] == [SignalName.FLOW_XOFF, SignalName.FLOW_XON]
    assert buf.offer(ev(6)) == ACCEPTED
    check_records(log.records)


def test_flow_credit_mode_blocks_without_credit_and_resumes_after_grant(check_records) -> None:
    buf, log = make(BufferConfig(max_items=100, flow_mode="credit", flow_high=3, flow_low=0))
    assert [buf.offer(ev(i)) for i in range(4)] == [ACCEPTED] * 3 + [BLOCKED]
    assert log.of(SignalName.FLOW_XOFF) == []
    for _ in range(3):
        buf.pop()
    (grant,) = log.of(SignalName.CREDIT_GRANT)
    assert grant.amount == 3
    assert buf.offer(ev(3)) == ACCEPTED
    check_records(log.records)


def test_flow_hybrid_mode_uses_both(check_records) -> None:
    buf, log = make(BufferConfig(max_items=100, flow_mode="hybrid", flow_high=3, flow_low=1))
    assert [buf.offer(ev(i)) for i in range(4)] == [ACCEPTED] * 3 + [BLOCKED]
    assert [s.signal for s in log.records] == [SignalName.FLOW_XOFF]
    buf.pop()
    buf.pop()
    names = [s.signal for s in log.records]
    assert SignalName.FLOW_XON in names and SignalName.CREDIT_GRANT in names
    assert buf.offer(ev(4)) == ACCEPTED
    check_records(log.records)


def test_atomic_drop_drops_whole_sync_group() -> None:
    buf, log = make(BufferConfig(max_items=3, drop_from="oldest", sync_policy="atomic_drop"))
    buf.offer(ev(0, sync_id="g1"))
    buf.offer(ev(1, sync_id="g2"))
    buf.offer(ev(2, sync_id="g1"))
    buf.offer(ev(3, sync_id="g2"))  # overflow: drops seq 0 (g1) -> seq 2 (g1) goes too
    buf.offer(ev(4, sync_id="g1"))  # later g1 members are dropped on arrival
    buf.flush_notices()
    assert [(e.seq, e.sync_id) for e in buf.data] == [(1, "g2"), (3, "g2")]
    reasons = {n.reason for n in log.of(SignalName.DROP_NOTICE)}
    assert "sync_group_dropped" in reasons


def test_drop_with_discontinuity_marks_stream(check_records) -> None:
    buf, log = make(BufferConfig(max_items=2, drop_from="oldest",
                                 sync_policy="drop_with_discontinuity", sync_domain="av"))
    for i in range(3):
        buf.offer(ev(i, sync_id="g1"))
    (disc,) = log.of(SignalName.DISCONTINUITY)
    assert disc.sync_domain == "av" and disc.discontinuity_id and disc.reason
    assert data_seqs(buf) == [1, 2]
    assert buf.data[-1].discontinuity_id == disc.discontinuity_id
    check_records(log.records)


def test_drop_turn_flushes_only_that_turn() -> None:
    buf, log = make(BufferConfig(max_items=10))
    for i in range(4):
        buf.offer(ev(i, turn_id="t1" if i % 2 == 0 else "t2"))
    assert buf.drop_turn("t1") == 2
    assert data_seqs(buf) == [1, 3]
    assert all(n.reason == "cancelled" for n in log.of(SignalName.DROP_NOTICE))


def test_memory_bounded_under_any_input_rate() -> None:
    buf, log = make(BufferConfig(max_items=50, max_bytes=10_000))
    for i in range(100_000):
        buf.offer(ev(i, size=640))
    buf.flush_notices()
    assert len(buf.data) <= 50 and buf.nbytes <= 10_000
    assert len(log.records) <= log.records.maxlen  # type: ignore[operator]
    # contiguous drops aggregate into few notices, not one per event
    assert len(log.of(SignalName.DROP_NOTICE)) == 1


def test_watermark_merge_action_coalesces_queued_partials(check_records) -> None:
    """F-144: the plan's ``merge`` action at the high watermark."""
    buf, log = make(BufferConfig(max_items=100, watermark_items=(4, 1), watermark_action="merge"))
    for i in range(4):
        e = ev(i, kind="text", final=False, revision=i, attrs={"segment": "s"})
        buf.offer(e)
    assert data_seqs(buf) == [3]
    assert buf.data[0].merged_from == ("0", "1", "2", "3")
    names = [r.signal for r in log.records]
    assert names[0] == SignalName.WATERMARK and SignalName.DROP_NOTICE in names
    assert log.of(SignalName.WATERMARK)[-1].reason == "low_watermark_crossed:queue_items"
    check_records(log.records)


def test_queue_ms_watermark_crossing() -> None:
    clock = VirtualClock()
    buf, log = make(BufferConfig(max_items=100, max_queue_ms=10_000, watermark_ms=(100, 20)),
                    clock)
    buf.offer(ev(0))
    clock.advance(150)
    buf.offer(ev(1))
    assert [w.reason for w in log.of(SignalName.WATERMARK)] == ["high_watermark_crossed:queue_ms"]
    buf.pop()
    buf.pop()
    assert log.of(SignalName.WATERMARK)[-1].reason == "low_watermark_crossed:queue_ms"


def test_merge_overflow_sheds_partials_before_finals() -> None:
    buf, _ = make(BufferConfig(strategy="merge", max_items=3))
    for i, (seg, final) in enumerate([("a", True), ("b", True), ("c", False), ("d", True)]):
        buf.offer(ev(i, kind="text", final=final, attrs={"segment": seg}))
    assert [(e.seq, e.final) for e in buf.data] == [(0, True), (1, True), (3, True)]


def eos(seq: int, turn_id: str = "t1") -> Event:
    """The end-of-stream marker of a turn's text (what the LLM emits after its reply)."""
    e = Event("text", "", final=True, attrs={"eos": True}, turn_id=turn_id)
    e.seq = seq
    return e


def test_time_in_queue_never_expires_an_end_of_stream_marker(check_records) -> None:
    # a slow consumer (a TTS stalled on its first sentence) must not lose the marker that
    # ends the turn's stream: without it the reply never completes and the turn cannot
    # commit; the stale content around it is still shed
    clock = VirtualClock()
    buf, log = make(BufferConfig(strategy="block", max_block_ms=50, max_queue_ms=1000), clock)
    buf.offer(ev(0, kind="text"))
    buf.offer(eos(1))
    buf.offer(ev(2, kind="text"))
    clock.advance(2500)
    popped = buf.pop()
    assert popped is not None and popped.seq == 1 and popped.attrs == {"eos": True}
    assert buf.pop() is None and buf.nbytes == 0
    buf.flush_notices()
    assert [(n.reason, n.seq_range.start, n.seq_range.end)
            for n in log.of(SignalName.DROP_NOTICE)] == [
        ("max_queue_ms_exceeded", 0, 0), ("max_queue_ms_exceeded", 2, 2)]
    assert buf.stats.expired == 2
    check_records(log.records)


def test_overflow_sheds_content_but_never_an_end_of_stream_marker() -> None:
    audio_end = Event("audio_end", None, attrs={"eos": True})
    audio_end.seq = 1
    buf, _ = make(BufferConfig(max_items=2, drop_from="oldest"))
    for e in (ev(0), audio_end, ev(2), ev(3)):
        buf.offer(e)
    assert data_seqs(buf) == [1, 3]  # the oldest content went, the marker stayed
    full, _ = make(BufferConfig(max_items=1, drop_from="newest"))
    full.offer(ev(0))
    assert full.offer(eos(1)) == ACCEPTED  # queued past the bound, displacing nothing
    assert data_seqs(full) == [0, 1]
    sampled, _ = make(BufferConfig(strategy="sample", max_items=1, sample_every=2))
    sampled.offer(ev(0))
    assert sampled.offer(eos(1)) == ACCEPTED and data_seqs(sampled) == [0, 1]
    latest, _ = make(BufferConfig(strategy="latest_only"))
    for e in (ev(0), eos(1), ev(2)):
        latest.offer(e)
    assert data_seqs(latest) == [1, 2]
    watermark, _ = make(BufferConfig(max_items=100, watermark_items=(3, 1),
                                     watermark_action="latest_only"))
    for e in (ev(0), eos(1), ev(2)):
        watermark.offer(e)
    assert data_seqs(watermark) == [1, 2]  # the newest content and the marker


def test_overflow_never_sheds_the_end_of_utterance_frame(check_records) -> None:
    """The VAD's end-of-utterance frame is what its STT finalises on: a full edge sheds
    the frames around it (recorded) but never it, so the utterance still ends."""
    buf, log = make(BufferConfig(max_items=2, drop_from="oldest"))
    for i in range(6):
        buf.offer(ev(i, attrs={"speech": True, "eou": i == 1}))
    assert data_seqs(buf) == [1, 5]  # the boundary stayed, the oldest content went
    buf.flush_notices()
    drops = [r for r in log.records if r.signal == SignalName.DROP_NOTICE]
    assert [(r.seq_range.start, r.seq_range.end) for r in drops] == [(0, 0), (2, 4)]
    blocked, _ = make(BufferConfig(strategy="block", max_items=1, max_block_ms=5))
    blocked.offer(ev(0))
    assert blocked.shed(ev(1, attrs={"eou": True})) == ACCEPTED  # not shed after a block
    assert data_seqs(blocked) == [0, 1]
    check_records(log.records)


async def test_a_blocked_end_of_stream_marker_is_queued_not_shed() -> None:
    clock = VirtualClock()
    buf, _ = make(BufferConfig(strategy="block", max_items=1, max_block_ms=40), clock)
    buf.offer(ev(0, kind="text"))
    assert buf.offer(eos(1)) == BLOCKED  # flow control still applies to it
    assert not await buf.wait_space(40)
    assert buf.shed(eos(1)) == ACCEPTED and data_seqs(buf) == [0, 1]


def test_cancellation_still_flushes_a_turns_end_of_stream_marker() -> None:
    buf, _ = make(BufferConfig(max_items=10))
    buf.offer(ev(0, turn_id="t1"))
    buf.offer(eos(1))
    assert buf.drop_turn("t1") == 2 and not buf.data


def test_control_past_its_bound_displaces_telemetry_before_data() -> None:
    buf, log = make(BufferConfig(max_items=10, control_max_items=1))
    buf.offer(ev(0))
    buf.offer(ev(1, lane=Lane.TELEMETRY))
    buf.offer(ev(2, kind="cancel", lane=Lane.CONTROL))
    buf.offer(ev(3, kind="cancel", lane=Lane.CONTROL))  # over the bound: telemetry goes
    buf.offer(ev(4, kind="cancel", lane=Lane.CONTROL))  # no telemetry left: the oldest data
    buf.flush_notices()
    assert [e.seq for e in buf.control] == [2, 3, 4] and not buf.telemetry and not buf.data
    assert [(n.target_lane, n.reason) for n in log.of(SignalName.DROP_NOTICE)] == [
        (Lane.TELEMETRY, "control_overflow_displaced_telemetry"),
        (Lane.DATA, "control_overflow_displaced_data")]


def test_an_edge_lane_queues_its_data_on_that_lane() -> None:
    from rspp.kernel._buffer import LaneEdgeBuffer

    clock = VirtualClock()
    counter = iter(range(10**9))
    log = SignalLog("s1", "p@1.0.0", clock, lambda: next(counter))
    tel = LaneEdgeBuffer("a->b", BufferConfig(lane=Lane.TELEMETRY, telemetry_max_items=2,
                                              telemetry_handling="drop"), log, clock)
    for i in range(3):
        tel.offer(ev(i))
    tel.offer(ev(3, kind="audio_end"))  # an end-of-stream marker is never shed
    tel.offer(ev(4, kind="cancel", lane=Lane.CONTROL))  # keeps its own lane
    tel.flush_notices()
    assert [e.seq for e in tel.telemetry] == [0, 1, 3] and [e.seq for e in tel.control] == [4]
    (notice,) = log.of(SignalName.DROP_NOTICE)
    assert notice.target_lane == Lane.TELEMETRY and notice.seq_range.start == 2
    assert [tel.pop().seq for _ in range(4)] == [4, 0, 1, 3]  # type: ignore[union-attr]

    ctl = LaneEdgeBuffer("c->d", BufferConfig(lane=Lane.CONTROL, max_items=1), log, clock)
    for i in range(3):
        ctl.offer(ev(10 + i))  # past max_items: control is never dropped
    ctl.offer(ev(20, lane=Lane.TELEMETRY))
    assert [e.seq for e in ctl.control] == [10, 11, 12] and [e.seq for e in ctl.telemetry] == [20]
    assert ctl.pop().lane is Lane.DATA  # type: ignore[union-attr]  # the event is unchanged


def test_lane_bounds_must_be_positive() -> None:
    with pytest.raises(BufferConfigError, match="telemetry_max_items"):
        BufferConfig(telemetry_max_items=0)
    with pytest.raises(BufferConfigError, match="control_max_items"):
        BufferConfig(control_max_items=0)


def test_a_spec_edges_lane_and_lane_bounds_reach_its_runtime_buffer() -> None:
    from rspp.kernel import RuntimeGraph
    from rspp.spec import compile_spec, parse_spec_text

    spec = """\
name: lanes
version: 1.0.0
nodes:
  - {id: a, type: sentence_segmenter}
  - {id: b, type: sentence_segmenter}
edges:
  - {from: input.text, to: a.text, buffer: {telemetry_max_items: 3, control_max_items: 9}}
  - {from: a.text, to: b.text, lane: TelemetryLane}
  - {from: b.text, to: output.text}
"""
    edges = {e.id: e for e in RuntimeGraph.from_definition(
        compile_spec(parse_spec_text(spec))).edges}
    first, second = edges["input.text->a.text"], edges["a.text->b.text"]
    assert (first.buffer.telemetry_max_items, first.buffer.control_max_items) == (3, 9)
    assert first.buffer.lane is Lane.DATA and second.buffer.lane is Lane.TELEMETRY
    assert (second.buffer.telemetry_max_items, second.buffer.control_max_items) == (64, 1024)
