"""The ingress flood guard measures media time against real time: a backlog delivered at
once after a stall (a loaded machine's scheduling burst, or a session that took seconds to
open while the client streamed) is caught up, not a flood; audio truly faster than real
time is one (``rspp.transports.IngressMeter``)."""

from __future__ import annotations

import pytest

from rspp.transports import Flood, IngressMeter

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
