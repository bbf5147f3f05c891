"""Headroom on the shared execution pool, enforced at turn admission (F-172).

``rspp serve --max-queue-depth N`` and ``--max-provider-load TYPE=N`` bound two loads
of the runtime's :class:`~rspp.kernel.ExecutionPool` beside its open turns:

- ``queue_depth``: work queued for a pool slot, over every pool key;
- ``provider:TYPE``: calls of node type TYPE in flight (the slots of its pool key in use:
  the provider concurrency, which ``--pool-limit TYPE=M`` caps at M).

While one is at its threshold a new turn is deferred at admission
(``capacity:queue_depth:N/N``, ``capacity:provider:llm:N/N``): the runtime stops taking
work before the queue grows or the provider saturates, and the turns already open go
on. They are :class:`~rspp.turns.Headroom` probes of the runtime's admission.

``--max-cpu-percent P`` (``--cpu-resume-percent R``) bounds a third load, the runtime's
own CPU utilisation (``rspp.server._cpu_load``); the runtime's capacity control
(``rspp.server._capacity_control``) samples it and records every threshold tripping and
clearing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rspp.kernel import ExecutionPool
from rspp.turns import Headroom

__all__ = ["PoolHeadroom", "pool_headroom"]


@dataclass(frozen=True, slots=True)
class PoolHeadroom:
    """The pool loads at which new turns are deferred (None / empty: not bounded)."""

    max_queue_depth: int | None = None
    #: node type -> calls in flight at which new turns are deferred
    max_provider_load: dict[str, int] = field(default_factory=dict)
    #: the runtime's CPU utilisation (percent of its CPUs) at which new turns are deferred
    max_cpu_percent: int | None = None
    #: the CPU utilisation at or below which they are admitted again (None: 3/4 of the max)
    cpu_resume_percent: int | None = None

    def resume_percent(self) -> int:
        """Where the CPU threshold clears (it trips at ``max_cpu_percent``)."""
        if self.cpu_resume_percent is not None:
            return self.cpu_resume_percent
        return (self.max_cpu_percent or 0) * 3 // 4


def pool_headroom(spec: PoolHeadroom | None, pool: ExecutionPool | None
                  ) -> tuple[Headroom, ...]:
    """The admission probes of ``spec`` over ``pool`` (none without a pool)."""
    if spec is None or pool is None:
        return ()
    probes: list[Headroom] = []
    if spec.max_queue_depth is not None:
        probes.append(Headroom("queue_depth", spec.max_queue_depth,
                               lambda: sum(pool.waiting(k) for k in pool.keys())))
    for kind, limit in sorted(spec.max_provider_load.items()):
        probes.append(Headroom(f"provider:{kind}", limit, _in_flight(pool, kind)))
    return tuple(probes)


def _in_flight(pool: ExecutionPool, kind: str) -> Callable[[], int]:
    """The slots of pool key ``kind`` in use now."""
    return lambda: pool.stats(kind)["active"] or 0
