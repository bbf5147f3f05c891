"""``LiveTransport.stats``: the egress lateness p99 follows the frames sent (sorted only
when a frame left since the last report)."""

from __future__ import annotations

from rspp.transports import LiveTransport


def test_stats_p99_follows_every_frame_sent_and_a_cleared_window() -> None:
    t = LiveTransport(16000)
    turn = t._turn(None)
    turn.pending.extend(bytes(640 * 300))
    for ms in range(100):
        t._send_frame(turn, float(ms))
    assert t.stats().egress_lateness_p99_ms == 99.0
    assert t.stats().egress_lateness_p99_ms == 99.0  # nothing sent since: the same
    for _ in range(100):
        t._send_frame(turn, 500.0)
    assert t.stats().egress_lateness_p99_ms == 500.0
    t.lateness_ms.clear()
    assert t.stats().egress_lateness_p99_ms == 0.0
    t.lateness_ms.extend([1.0] * 2000)  # a full window (its length cannot change)
    t.stats()
    for _ in range(50):
        t._send_frame(turn, 300.0)
    assert t.stats().egress_lateness_p99_ms == 300.0
