"""The runtime's control channel to its control plane: pushed hand-offs (F-095, F-156).

:class:`NoticeListener` keeps one long poll open (``POST /v1/runtimes/{id}/notices``,
:mod:`rspp.controlplane._notices`): the control plane answers it as soon as a two-phase
hand-off of a lease this runtime holds begins (an operator's migrate, rotation or
revoke), and the session holding it drains at once (fences its output, ends the turn,
releases the lease) instead of at its next renewal. Each notice is handed to
``on_notice`` once. The renewal's ``409 lease_handoff`` stays the fallback: a notice
lost with a dropped connection, or a control plane without the route (then the listener
stops, logged once), only means the session learns it there. While the control plane
is unreachable (or stopping: it answers every poll at once, ``stopping``) the listener
backs off, 1 s doubling up to 5 s with jitter, until it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from rspp.controlplane import ControlPlaneClient, CPError
from rspp.controlplane._notices import RuntimeNotice
from rspp.server._cplink import route_missing

__all__ = ["NoticeListener"]

_LOG = logging.getLogger("rspp.server")

#: how long one long poll waits (the control plane's limit is 10 s)
WAIT_MS = 10_000
#: pause after a failed poll (the control plane unreachable, or stopping), doubled at each
#: failure in a row up to ``RETRY_MAX_S``, with jitter; reset by an answer
RETRY_S = 1.0
RETRY_MAX_S = 5.0


class NoticeListener:
    """Long-polls the control plane for hand-offs of this runtime's leases."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str,
                 on_notice: Callable[[RuntimeNotice], None], *, wait_ms: int = WAIT_MS,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.runtime_id = runtime_id
        self.on_notice = on_notice
        self.wait_ms = wait_ms
        #: answers received, notices handed on, and failed polls
        self.polls = 0
        self.notices = 0
        self.failures = 0
        self._known: tuple[int, ...] = ()
        self._rng = rng if rng is not None else random.Random()
        #: failed (or early, ``stopping``) polls in a row: the next pause's backoff
        self.failing = 0

    def retry_after(self) -> float:
        """Seconds to wait before the next poll after ``failing`` failures in a row: the
        base pause doubled per failure up to :data:`RETRY_MAX_S`, jittered down by up to a
        half (runtimes of a fleet do not come back in step)."""
        base = min(RETRY_MAX_S, RETRY_S * 2.0 ** max(0, self.failing - 1))
        return base * (0.5 + 0.5 * self._rng.random())

    async def run(self) -> None:
        """Poll until cancelled (or the control plane has no such route)."""
        while True:
            try:
                answer = await self.client.runtime_notices(self.runtime_id, self._known,
                                                           self.wait_ms)
            except CPError as exc:
                if route_missing(exc) or exc.status == 403:  # an older plane, a tenant key
                    _LOG.info("no control channel to the control plane (%s); hand-offs are "
                              "learned at lease renewal", exc.message)
                    return
                # unreachable, or this runtime's registration is gone for now: again later,
                # backing off (the poll shares the client's connections with the renewals
                # and gate samples, which must not wait behind it)
                _LOG.debug("control channel poll failed: %s", exc)
                await self._pause()
                continue
            self.polls += 1
            known = set(self._known)
            for notice in answer.notices:
                if notice.handoff_id not in known:
                    self.notices += 1
                    self.on_notice(notice)
            # what is still pending: a completed hand-off drops out of the known set
            self._known = tuple(n.handoff_id for n in answer.notices)
            if answer.stopping:  # answered early: its process is going away
                await self._pause()
            else:
                self.failing = 0

    async def _pause(self) -> None:
        self.failures += 1
        self.failing += 1
        await asyncio.sleep(self.retry_after())
