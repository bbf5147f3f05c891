"""The runtime's capacity control: headroom thresholds tripping and clearing (F-172).

One runtime-wide task (:meth:`CapacityControl.run`) samples the runtime's CPU load and
judges every headroom threshold (``cpu``, ``queue_depth``, ``provider:TYPE``) each
period. When one trips (new turns are deferred) or clears (they are admitted again) it
is a capacity-control event (:class:`CapacityEvent`): the runtime logs it, counts it on
``/metrics`` (``rspp_capacity_events_total{resource,decision}``,
``rspp_capacity_tripped{resource}``) and records it in the timeline of every live
session as a session-scoped admission control signal (RK-25): ``defer`` when the
threshold trips, ``admit`` when it clears, its reason naming resource, load, threshold
and decision (``capacity_control:cpu:35/30:defer``).

A turn deferred at a threshold the task has not yet seen over (a queue that grew since
the last period) trips it first (:meth:`CapacityControl.deferred`), so a deferred turn's
timeline holds the trip before the turn's own ``defer`` outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rspp.contracts import Emitter, SignalName
from rspp.kernel import ExecutionPool, SessionActor
from rspp.server._cpu_load import CpuHeadroom, CpuLoad
from rspp.server._headroom import PoolHeadroom, pool_headroom
from rspp.turns import Headroom

__all__ = ["CAPACITY_CONTROL", "CapacityControl", "CapacityEvent", "record_capacity_event"]

_LOG = logging.getLogger("rspp.server.capacity")

#: the reason prefix of a capacity-control signal
CAPACITY_CONTROL = "capacity_control:"
#: how often the thresholds are judged (and the CPU load sampled)
PERIOD_S = 0.1

Decision = Literal["defer", "admit"]


@dataclass(frozen=True, slots=True)
class CapacityEvent:
    """A headroom threshold tripped (``defer``: new turns are deferred) or cleared
    (``admit``: they are admitted again) at ``load``."""

    resource: str
    load: int
    threshold: int
    decision: Decision

    @property
    def reason(self) -> str:
        return f"{CAPACITY_CONTROL}{self.resource}:{self.load}/{self.threshold}:{self.decision}"


class CapacityControl:
    """The runtime's headroom probes, which of them are tripped, and the events so far."""

    def __init__(self, probes: tuple[Headroom, ...], cpu: CpuHeadroom | None,
                 notify: Callable[[CapacityEvent], None]) -> None:
        self.probes = probes
        self.cpu = cpu
        self.notify = notify
        self.tripped: set[str] = set()
        #: events by (resource, decision)
        self.events: dict[tuple[str, str], int] = {}
        self._by_name = {p.name: p for p in probes}
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, spec: PoolHeadroom | None, pool: ExecutionPool | None,
           notify: Callable[[CapacityEvent], None]) -> CapacityControl:
        """The capacity control of ``spec``'s thresholds over ``pool`` and the process CPU."""
        cpu = None
        if spec is not None and spec.max_cpu_percent is not None:
            cpu = CpuHeadroom(spec.max_cpu_percent, spec.resume_percent(), CpuLoad())
        probes = pool_headroom(spec, pool) + ((cpu.probe(),) if cpu is not None else ())
        return cls(probes, cpu, notify)

    def tick(self) -> None:
        """Sample the CPU load and judge every threshold now."""
        if self.cpu is not None:
            self.cpu.sample()
        for probe in self.probes:
            value = probe.read()
            if probe.over(value) != (probe.name in self.tripped):
                self._event(probe, value)

    def deferred(self, name: str) -> None:
        """A turn is being deferred at threshold ``name``: trip it now if it is not yet."""
        probe = self._by_name.get(name)
        if probe is not None and name not in self.tripped:
            self._event(probe, probe.read())

    def _event(self, probe: Headroom, value: int) -> None:
        decision: Decision = "admit" if probe.name in self.tripped else "defer"
        if decision == "defer":
            self.tripped.add(probe.name)
        else:
            self.tripped.discard(probe.name)
        key = (probe.name, decision)
        self.events[key] = self.events.get(key, 0) + 1
        event = CapacityEvent(probe.name, value, probe.limit, decision)
        _LOG.info("capacity control: %s %s at %d (threshold %d)", probe.name,
                  "tripped, new turns deferred" if decision == "defer"
                  else "cleared, new turns admitted", value, probe.limit)
        self.notify(event)

    def start(self) -> None:
        """Judge the thresholds every period on one task (none without thresholds)."""
        if self.probes and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(),
                                                                name="rspp-capacity-control")

    async def run(self, period_s: float = PERIOD_S) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # a failing probe never stops the runtime
                _LOG.exception("capacity control: judging the thresholds failed")
            await asyncio.sleep(period_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # its cancellation, absorbed


def record_capacity_event(session: SessionActor, event: CapacityEvent) -> None:
    """Record ``event`` in a live session's timeline: a session-scoped ``defer``/``admit``
    control signal of admission (RK-25), a side note at the session's current sequence
    (the runtime's load, not the session, decided it: a replay has no such signal, and
    taking a sequence number would move every later record and turn plan)."""
    name = SignalName.DEFER if event.decision == "defer" else SignalName.ADMIT
    session.side_signal(name, Emitter.RK_25, event.reason)
