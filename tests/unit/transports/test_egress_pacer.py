"""The runtime's shared egress pacer: one loop timer for every session's reply audio.

Sessions here are small schedules (a reply of ``frames`` frames every 20 ms): what
the pacer must guarantee is that each is stepped at (not before) the time it asked
for, that sessions due together cost one timer wake-up, that a kick steps an idle
session on the next loop iteration, that a removed session is never stepped again,
and that one session's failure does not stop the others.
"""

from __future__ import annotations

import asyncio

from rspp.transports._egress import EgressPacer

FRAME_S = 0.020


class Reply:
    """Sends ``frames`` frames, one every 20 ms from its first step; then idles."""

    def __init__(self, frames: int, done: asyncio.Future[None] | None = None,
                 fail_at: int | None = None) -> None:
        self.frames, self.done, self.fail_at = frames, done, fail_at
        self.sent: list[float] = []
        self.asked: list[float] = []
        self.early: list[float] = []
        self.due: float | None = None

    def pace(self, now: float) -> float | None:
        if self.asked and now < self.asked[-1]:
            self.early.append(self.asked[-1] - now)
        if len(self.sent) == self.fail_at:
            self.fail_at = None
            raise RuntimeError("this session's step fails once")
        if self.due is None:
            self.due = now
        while self.due <= now and len(self.sent) < self.frames:
            self.sent.append(now)
            self.due += FRAME_S
        if len(self.sent) == self.frames:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return None
        self.asked.append(self.due)
        return self.due


def test_sessions_due_together_share_one_timer_and_are_never_stepped_early() -> None:
    async def main() -> tuple[EgressPacer, list[Reply]]:
        loop = asyncio.get_running_loop()
        pacer = EgressPacer(loop)
        replies = [Reply(5, loop.create_future()) for _ in range(50)]
        for r in replies:
            pacer.kick(r)
        await asyncio.gather(*(r.done for r in replies if r.done is not None))
        return pacer, replies

    pacer, replies = asyncio.run(main())
    assert all(len(r.sent) == 5 for r in replies)
    assert not [r.early for r in replies if r.early]
    # 50 sessions on the same schedule: 4 timed wake-ups (frames 2..5), not 200
    assert pacer.wakeups <= 8, pacer.wakeups
    assert len(pacer) == 0  # every reply finished: nothing holds a timer


def test_a_kick_steps_an_idle_session_and_a_removed_one_is_never_stepped() -> None:
    async def main() -> tuple[Reply, Reply]:
        loop = asyncio.get_running_loop()
        pacer = EgressPacer(loop)
        kept = Reply(3, loop.create_future())
        dropped = Reply(3)
        pacer.kick(kept)
        pacer.kick(dropped)
        pacer.kick(kept)  # twice before the step: stepped once
        await asyncio.sleep(0)  # the kicked sessions' step runs on the next iteration
        assert len(kept.sent) == 1 and len(dropped.sent) == 1
        pacer.remove(dropped)
        if kept.done is not None:
            await kept.done
        return kept, dropped

    kept, dropped = asyncio.run(main())
    assert len(kept.sent) == 3
    assert len(dropped.sent) == 1


def test_one_failing_session_does_not_stop_the_others() -> None:
    async def main() -> tuple[Reply, Reply]:
        loop = asyncio.get_running_loop()
        pacer = EgressPacer(loop)
        bad = Reply(3, fail_at=1)
        good = Reply(3, loop.create_future())
        pacer.kick(bad)
        pacer.kick(good)
        if good.done is not None:
            await good.done
        return bad, good

    bad, good = asyncio.run(main())
    assert len(good.sent) == 3
    assert len(bad.sent) == 1  # its failed step leaves it idle until it is kicked again


def test_one_pacer_per_event_loop() -> None:
    async def main() -> tuple[EgressPacer, EgressPacer]:
        return EgressPacer.of(), EgressPacer.of()

    a1, a2 = asyncio.run(main())
    b1, _ = asyncio.run(main())
    assert a1 is a2
    assert b1 is not a1
