"""The ingress flood guard measures media time against real time: a backlog delivered at
once after a stall (a loaded machine's scheduling burst, or a session that took seconds to
open while the client streamed) is caught up, not a flood; audio truly faster than real
time is one (``rspp.transports.IngressMeter``)."""

from __future__ import annotations

import pytest

from rspp.transports import Flood, IngressMeter, MediaSkewHistogram

pytestmark = pytest.mark.unit

RATE = 8000
FRAME = RATE // 50 * 2  # 20 ms of PCM16


def feed(meter: IngressMeter, times_s: list[float]) -> None:
    for t in times_s:
        meter.arrive(FRAME, t)


def test_a_stalled_client_catching_up_its_backlog_is_not_a_flood() -> None:
    meter = IngressMeter(RATE)
    # the session took 3 s to open while the client streamed: its backlog arrives at once
    feed(meter, [0.0] * 150)
    feed(meter, [k * 0.02 for k in range(1, 100)])  # then real time
    # the machine stalls 4 s (twice the allowance); the 200 frames sent meanwhile arrive
    # at once, then the stream goes on in real time
    feed(meter, [6.0] * 200)
    feed(meter, [6.0 + k * 0.02 for k in range(1, 100)])
    assert meter.frames == 548 and meter.ahead_ms <= 20.0
    assert meter.late >= 1  # the stall's first frame was late


def test_audio_faster_than_real_time_is_a_flood() -> None:
    burst = IngressMeter(RATE)
    with pytest.raises(Flood, match="ahead of real time"):
        feed(burst, [0.0] * 1000)  # 20 s of audio at once
    # tripped past the catch-up credit (5 s) and the allowance (2 s)
    assert burst.frames == (5000 + 2000) // 20 + 1

    fast = IngressMeter(RATE)
    with pytest.raises(Flood):  # twice real time: 20 ms more audio every 20 ms
        for k in range(2000):
            feed(fast, [k * 0.02, k * 0.02])
    assert 13_900 <= fast.media_ms <= 14_000  # ~14 s of audio in ~7 s of real time

    idle = IngressMeter(RATE)
    feed(idle, [k * 0.02 for k in range(50)])
    # a minute of silence earns no more than the credit: 8 s at once is a flood
    with pytest.raises(Flood):
        feed(idle, [60.0] * 400)
    assert idle.frames == 50 + (5000 + 2000) // 20 + 1


def test_the_media_to_runtime_mapping_error_is_kept_and_a_late_frame_re_anchors() -> None:
    """NF-018: each frame's lateness against its media time goes to the session's
    histogram; beyond ``late_after_ms`` the frame is counted once, re-anchors the mapping
    and is told (media time, lateness); early audio (a backlog) counts 0."""
    told: list[tuple[float, float]] = []
    skew = MediaSkewHistogram()
    meter = IngressMeter(RATE, late_after_ms=200.0, skew=skew,
                         on_late=lambda media, late: told.append((media, late)))
    feed(meter, [0.0] * 10)  # a 200 ms backlog at once: early, 0
    feed(meter, [0.2 + k * 0.02 + 0.0055 for k in range(50)])  # real time, 5.5 ms late
    feed(meter, [2.4])  # media 1.2 s, due at 1.2 s, arrives after a stall: 1.2 s late
    feed(meter, [2.4 + k * 0.02 for k in range(1, 50)])  # real time again, from there
    assert told == [(1200.0, pytest.approx(1200.0))]
    assert meter.late == skew.late == 1 and skew.count == 110
    assert skew.max_ms == pytest.approx(1200.0)
    # the backlog, and the frames after the re-anchor (on time, to a rounding error)
    assert skew.bins[0] + skew.bins[1] == 10 + 49
    assert skew.quantile(0.5) <= 1.0 and skew.p99_ms == 6.0  # one late frame in 110
    assert "p99 6 ms, max 1200 ms, bound 200 ms, late (re-anchored) 1" in skew.describe(200)


def test_the_mapping_error_histogram_bins_and_merges() -> None:
    h = MediaSkewHistogram()
    for ms in (0.5, 1.0, 99.5, 105.0, 995.0, 1050.0, 20_000.0, -3.0):
        h.add(ms)
    edges = [edge for edge, _ in h.cumulative()]
    assert edges[:3] == [0.0, 1.0, 2.0] and edges[-1] == 10_000.0
    counts = dict(h.cumulative())
    # 0.5 and 1.0 share the 1 ms bin; 99.5 -> 100; 105 -> 110; 995 -> 1000; 1050 -> 1100
    assert (counts[0.0], counts[1.0], counts[100.0], counts[110.0], counts[1000.0],
            counts[1100.0], counts[10_000.0]) == (1, 3, 4, 5, 6, 7, 7)
    assert h.quantile(1.0) == 20_000.0  # beyond the last edge: the largest seen
    other = MediaSkewHistogram()
    other.add(3.0)
    other.late = 2
    h.merge(other)
    assert h.count == 9 and h.late == 2 and h.max_ms == 20_000.0
    assert MediaSkewHistogram().p99_ms == 0.0
