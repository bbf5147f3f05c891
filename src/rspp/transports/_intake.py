"""The pieces of a live transport's frame intake that spare every frame a coroutine.

A session takes 50 frames a second from each client; most go in without waiting for
anything (the ingress lock free, :class:`~rspp.transports._ingress.IngressLock`).
:data:`TAKEN` is what the intake returns for a frame taken inside the call (awaiting it
returns at once), so such a frame costs no coroutine object and no task step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

__all__ = ["TAKEN", "nothing"]


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
