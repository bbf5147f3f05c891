"""The ingress jitter buffer (F-087): order, duplicates, late frames, loss concealment, depth.

Time is passed in explicitly (seconds), so every case is exact on any machine.
"""

from __future__ import annotations

import numpy as np
import pytest

from rspp.spec import JITTER_PRESETS, JitterProfile
from rspp.transports import JitterBuffer

pytestmark = pytest.mark.unit

RATE = 16000
FRAME = 640  # 20 ms of PCM16 at 16 kHz


def frame(k: int) -> bytes:
    """Frame ``k``: a constant, recognisable level (k mod 300 + 1) * 100."""
    return np.full(FRAME // 2, (k % 300 + 1) * 100, dtype=np.int16).tobytes()


def profile(**kw: object) -> JitterProfile:
    from dataclasses import replace

    return replace(JITTER_PRESETS["balanced"], **kw)  # type: ignore[arg-type]


def run(buf: JitterBuffer, order: list[int], step_s: float = 0.02) -> list[bytes]:
    """Push frames in ``order`` at real-time spacing; flush; the released audio, per frame."""
    out: list[bytes] = []
    t = 0.0
    for k in order:
        out += [p.pcm for p in buf.push(frame(k), k, t)]
        t += step_s
    out += [p.pcm for p in buf.flush(t)]
    joined = b"".join(out)
    return [joined[i:i + FRAME] for i in range(0, len(joined), FRAME)]


def test_in_order_frames_pass_at_once_with_no_added_latency() -> None:
    buf = JitterBuffer(profile(), RATE)
    assert [p.pcm for p in buf.push(frame(0), 0, 0.0)] == [frame(0)]
    assert [p.pcm for p in buf.push(frame(1), 1, 0.02)] == [frame(1)]
    assert buf.stats.hold_max_ms == 0 and not buf.holding


def test_reordered_frames_within_the_window_come_out_in_order() -> None:
    buf = JitterBuffer(profile(), RATE)
    got = run(buf, [0, 2, 1, 4, 3, 5])
    assert got == [frame(k) for k in range(6)]
    st = buf.stats
    assert (st.out_of_order, st.reordered, st.lost, st.concealed) == (2, 2, 0, 0)
    assert 0 < st.hold_max_ms <= profile().target_ms


def test_duplicates_are_dropped_and_counted() -> None:
    buf = JitterBuffer(profile(), RATE)
    got = run(buf, [0, 1, 1, 2, 0, 3])
    assert got == [frame(k) for k in range(4)]
    assert buf.stats.duplicates == 2 and buf.stats.lost == 0


def test_a_lost_frame_is_concealed_with_silence_keeping_the_duration() -> None:
    buf = JitterBuffer(profile(conceal="silence"), RATE)
    got = run(buf, [0, 1, 3, 4, 5, 6, 7])
    assert len(got) == 8
    assert got[2] == bytes(FRAME)  # the place of frame 2: silence
    assert [got[k] for k in (0, 1, 3, 7)] == [frame(0), frame(1), frame(3), frame(7)]
    assert (buf.stats.lost, buf.stats.concealed, buf.stats.discontinuities) == (1, 1, 0)
    assert [loss.describe() for loss in buf.losses] == [
        "lost seq 2..2: concealed 1 (silence), dropped 0"]


def test_repeat_fade_repeats_the_last_frame_fading_to_silence() -> None:
    buf = JitterBuffer(profile(conceal="repeat_fade", conceal_max_frames=2), RATE)
    got = run(buf, [0, 1, 5, 6, 7, 8, 9])  # 2, 3 and 4 never come
    a = [np.frombuffer(f, dtype=np.int16) for f in got]
    assert a[2][0] == 200 and 95 <= a[2][-1] <= 105  # frame 1 (level 200), fading
    assert 95 <= a[3][0] <= 105 and a[3][-1] == 0  # ... to silence
    # beyond conceal_max_frames the gap is dropped: frame 5 follows at once
    assert len(got) == 9 and got[4] == frame(5)
    st = buf.stats
    assert (st.lost, st.concealed, st.discontinuities) == (3, 2, 1)


def test_drop_policy_skips_the_gap_and_marks_a_discontinuity() -> None:
    buf = JitterBuffer(profile(loss="drop"), RATE)
    pieces = []
    for t, k in enumerate([0, 1, 3, 4, 5, 6, 7]):
        pieces += buf.push(frame(k), k, t * 0.02)
    assert [p.pcm for p in pieces] == [frame(k) for k in (0, 1, 3, 4, 5, 6, 7)]
    assert [p.discontinuity for p in pieces] == [False, False, True, False, False, False, False]
    assert (buf.stats.lost, buf.stats.concealed, buf.stats.discontinuities) == (1, 0, 1)


def test_a_frame_after_its_place_was_played_is_too_late_and_deepens_an_adaptive_buffer() -> None:
    buf = JitterBuffer(profile(mode="adaptive", target_ms=40, max_ms=120), RATE)
    got = run(buf, [0, 1, 3, 4, 5, 6, 2, 7])
    assert len(got) == 8 and got[2] != frame(2)  # its place was concealed before it came
    assert buf.stats.too_late == 1 and buf.stats.lost == 1
    assert buf.depth_ms == 60  # one frame deeper


def test_a_fixed_buffer_keeps_its_depth() -> None:
    buf = JitterBuffer(profile(mode="fixed", target_ms=40), RATE)
    run(buf, [0, 1, 3, 4, 5, 6, 2, 7])
    assert buf.depth_ms == 40 and buf.stats.too_late == 1


def test_the_held_audio_never_exceeds_the_depth() -> None:
    """A frame that never comes: the buffer stops waiting once it holds more than the depth
    (here 60 ms: the fourth held frame releases the gap), bounding the latency it adds."""
    buf = JitterBuffer(profile(target_ms=60, reorder_window_frames=50), RATE)
    buf.push(frame(0), 0, 0.0)
    released = [buf.push(frame(k), k, 0.0) for k in (2, 3, 4)]  # a burst: no time passes
    assert released == [[], [], []] and buf.holding
    out = buf.push(frame(5), 5, 0.0)
    assert len(b"".join(p.pcm for p in out)) == 5 * FRAME and not buf.holding


def test_the_reorder_window_bounds_how_far_ahead_a_frame_may_be() -> None:
    buf = JitterBuffer(profile(target_ms=200, reorder_window_frames=2), RATE)
    buf.push(frame(0), 0, 0.0)
    assert buf.push(frame(3), 3, 0.0) == []  # 2 ahead of the missing frame 1: held
    out = buf.push(frame(4), 4, 0.0)  # 3 ahead: frame 1 (and 2) are given up
    assert buf.stats.lost == 2 and not buf.holding and len(out) == 3


def test_the_wait_ends_after_the_depth_in_wall_time() -> None:
    buf = JitterBuffer(profile(target_ms=60), RATE)
    buf.push(frame(0), 0, 10.0)
    assert buf.push(frame(2), 2, 10.0) == []
    assert buf.due() == pytest.approx(10.06)
    assert buf.expire(10.05) == []
    out = buf.expire(10.06)
    assert [p.concealed for p in out] == [1, 0] and buf.stats.hold_max_ms == pytest.approx(60)


def test_an_adaptive_buffer_shrinks_after_steady_audio() -> None:
    buf = JitterBuffer(profile(mode="adaptive", target_ms=60, min_ms=20), RATE)
    run(buf, list(range(101)))
    assert buf.depth_ms == 20


def test_unnumbered_audio_passes_straight_through() -> None:
    buf = JitterBuffer(profile(), RATE)
    assert [p.pcm for p in buf.push(b"\x01\x00" * 7, None, 0.0)] == [b"\x01\x00" * 7]
    assert buf.stats.frames == 0


def test_a_restarted_count_resynchronises_instead_of_muting_the_client() -> None:
    buf = JitterBuffer(profile(), RATE)
    got = run(buf, [*range(600, 700), 0, 1, 2])  # the client restarted its count at 0
    assert got == [frame(k) for k in (*range(600, 700), 0, 1, 2)]
    assert buf.stats.discontinuities == 1 and buf.stats.too_late == 0
    assert buf.stats.duplicates == 0


def test_webrtc_frames_are_numbered_from_their_rtp_timestamps() -> None:
    from rspp.transports._webrtc import RtpFrameNumbers

    numbers = RtpFrameNumbers()
    # 20 ms Opus frames from an arbitrary first timestamp; the packets of 3 and 4 never came
    got = [numbers.number(48_000 + 960 * k, 960) for k in (0, 1, 2, 5, 6)]
    assert got == [0, 1, 2, 5, 6]
    # a frame off the grid (another length): arrival numbering from there on, order kept
    assert numbers.number(48_000 + 960 * 7, 480) == 7
    assert [numbers.number(48_000 + 960 * 9, 960), numbers.number(None, 960)] == [8, 9]
    assert RtpFrameNumbers().number(None, 960) == 0
