"""The replay's event loop (rspp.replay._loop): no I/O poll while callbacks are ready; the
same callbacks in the same order as asyncio's loop, timers and threads included."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from rspp.replay._loop import new_replay_loop, run_replay


class _CountingPoll:
    """The selector's epoll object, counting the polls that reach the kernel."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.polls = 0

    def poll(self, *args: Any) -> Any:
        self.polls += 1
        return self.inner.poll(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _ping_pong(log: list[str], rounds: int) -> None:
    """Two tasks handing over through futures, a timer and a thread's callback between."""
    loop = asyncio.get_running_loop()

    async def side(name: str) -> None:
        for k in range(rounds):
            log.append(f"{name}{k}")
            await asyncio.sleep(0)

    timer_fired = loop.create_future()
    loop.call_later(0.001, timer_fired.set_result, "timer")
    from_thread = loop.create_future()
    threading.Thread(target=loop.call_soon_threadsafe,
                     args=(from_thread.set_result, "thread")).start()
    await asyncio.gather(side("a"), side("b"))
    log.append(await timer_fired)
    log.append(await from_thread)


def test_the_replay_loop_runs_callbacks_in_asyncio_order_without_polling_between() -> None:
    rounds = 50
    expected: list[str] = []
    asyncio.run(_ping_pong(expected, rounds))
    got: list[str] = []
    assert run_replay(_ping_pong(got, rounds)) is None
    assert got == expected  # the same interleaving, the timer and the thread's callback

    polls = {}
    for name, make in (("asyncio", asyncio.new_event_loop), ("replay", new_replay_loop)):
        loop = make()
        counting = _CountingPoll(loop._selector._selector)  # type: ignore[attr-defined]
        loop._selector._selector = counting  # type: ignore[attr-defined]
        try:
            loop.run_until_complete(_ping_pong([], rounds))
        finally:
            loop.close()
        polls[name] = counting.polls
    # asyncio's loop polls on each of the ~rounds iterations that had something ready; the
    # replay's polls (and blocks) only while it waits for the timer and the thread
    assert polls["asyncio"] > rounds, polls
    assert polls["replay"] < 10, polls


def test_socket_input_is_still_seen_once_nothing_is_runnable() -> None:
    loop = new_replay_loop()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)

        async def echo() -> bytes:
            b.send(b"frame")
            return await loop.sock_recv(a, 16)

        assert loop.run_until_complete(asyncio.wait_for(echo(), 5)) == b"frame"
    finally:
        a.close()
        b.close()
        loop.close()
