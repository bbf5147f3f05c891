"""The pieces of a live transport's frame intake that spare every frame a coroutine.

A session takes 50 frames a second from each client; most go in without waiting for
anything (the ingress lock free, :class:`~rspp.transports._ingress.IngressLock`).
:data:`TAKEN` is what the intake returns for a frame taken inside the call (awaiting it
returns at once), so such a frame costs no coroutine object and no task step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from types import CoroutineType
from typing import Any, Protocol

__all__ = ["TAKEN", "DirectIntake", "IntakeRest", "installed", "nothing", "start_intake"]


class _Taken:
    """An awaitable that is done at once: the frame was taken (see :data:`TAKEN`)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


#: what ``push_audio`` returns for a frame the session took inside the call (nothing is
#: left to wait for: awaiting it returns at once)
TAKEN: Awaitable[None] = _Taken()


async def nothing() -> None:
    """Nothing to wait for (the awaitable of a frame that is not taken)."""


#: a started intake, resumed step by step: a coroutine, or an awaitable's iterator
_Steps = Generator[Any, None, Any] | Coroutine[Any, None, Any]


class IntakeRest:
    """The rest of a frame's intake that a server read callback (a frame sink) started
    and could not finish at once (it waits, e.g. on the session's flow control), or the
    exception it raised: awaited by the connection's reader in the frame's place (as if
    it had awaited the frame itself)."""

    __slots__ = ("_exc", "_it", "_yielded")

    def __init__(self, it: _Steps | None, yielded: Any = None,
                 exc: BaseException | None = None) -> None:
        self._it, self._yielded, self._exc = it, yielded, exc

    def __await__(self) -> Generator[Any, None, None]:
        it, yielded, exc = self._it, self._yielded, self._exc
        self._it = None
        if exc is not None:
            raise exc
        if it is None:
            return
        while True:  # ``yield from it``, resumed where the sink's first step stopped
            try:
                yield yielded
            except GeneratorExit:
                _close(it)
                raise
            except BaseException as thrown:  # cancellation, as ``yield from`` passes it
                try:
                    yielded = it.throw(thrown)
                except StopIteration:
                    return
                continue
            try:
                yielded = it.send(None)
            except StopIteration:
                return

    def close(self) -> None:
        """Never awaited (the reader ended first): the intake ends where it waits
        (its ``finally`` blocks run, e.g. an ingress lock is released)."""
        it, self._it = self._it, None
        if it is not None:
            _close(it)


def _close(it: _Steps) -> None:
    with contextlib.suppress(Exception):  # an intake failing as it closes: nobody to tell
        it.close()


def start_intake(aw: Awaitable[None]) -> IntakeRest | None:
    """Run the first step of a frame's intake ``aw`` (in a read callback, outside any
    task): None when it finished there, else the :class:`IntakeRest` the reader awaits
    (an exception the step raised is raised again there). ``aw`` must not be
    :data:`TAKEN` (check that first: it needs no step)."""
    try:
        # a coroutine is its own iterator (``__await__`` would wrap it: one object more)
        it = aw if type(aw) is CoroutineType else aw.__await__()
        yielded = it.send(None)
    except StopIteration:
        return None
    except (Exception, asyncio.CancelledError) as exc:
        return IntakeRest(None, exc=exc)
    return IntakeRest(it, yielded)


class DirectIntake(Protocol):
    """A connection's message sink in a server read callback (``rspp.frame_sink``,
    ``rspp.text_sink``): it takes messages only while its reader waits (``idle``); the
    rest of an intake it started and queued for the reader, if any (``rest``)."""

    idle: bool
    rest: IntakeRest | None


@contextlib.contextmanager
def installed(install: Callable[[Any], None] | None, sink: DirectIntake) -> Iterator[None]:
    """``sink`` installed through the server's scope extension ``install`` (None: the
    server offers none) while the reader runs; afterwards removed, and an intake it
    started that the reader never took ends where it waits."""
    if install is not None:
        install(sink)
    try:
        yield
    finally:
        sink.idle = False
        if install is not None:
            install(None)
        if sink.rest is not None:
            sink.rest.close()
