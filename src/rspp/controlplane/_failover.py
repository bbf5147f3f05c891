"""The failover monitor: a control-plane background task (F-095, F-096, F-113).

Every ``failover_interval_ms`` it runs :meth:`FleetOps.sweep_failover`: runtimes whose
last heartbeat is older than ``heartbeat_timeout_ms`` are marked unhealthy (routing
places nothing there; audited ``runtime.unhealthy``) and, in ``migrate`` mode, each
of their live sessions whose lease has expired is moved to a healthy runtime: the
lease rotates (epoch + 1), the session record points at the new runtime, and
``migration_start`` / ``lease_rotated`` / ``session_handoff`` / ``migration_finish``
are recorded. A client that reconnects with a fresh token of its session goes to
the new runtime, which resumes the session under the same id.

The task is owned: :meth:`FailoverMonitor.start` creates it, :meth:`stop` cancels and
awaits it. A failing sweep (database briefly unreachable) is logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from rspp.controlplane._errors import CPError
from rspp.controlplane._ops_fleet import FailoverSweep, FleetOps

__all__ = ["FailoverMonitor"]

_LOG = logging.getLogger("rspp.controlplane")


class FailoverMonitor:
    """Runs the failover sweep of ``cp`` periodically (see the module docstring)."""

    def __init__(self, cp: FleetOps, *, interval_s: float | None = None,
                 on_sweep: Callable[[FailoverSweep], None] | None = None) -> None:
        self.cp = cp
        self.interval_s = (interval_s if interval_s is not None
                           else cp.settings.failover_interval_ms / 1000)
        self.on_sweep = on_sweep
        self.sweeps = 0
        self.migrated = 0
        self.marked = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="rspp-cp-failover")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> FailoverSweep:
        """One pass (also what the background task runs)."""
        result = await self.cp.sweep_failover()
        self.sweeps += 1
        self.marked += len(result.marked)
        self.migrated += len(result.migrated)
        for runtime_id in result.marked:
            _LOG.warning("runtime %s stopped heartbeating: marked unhealthy", runtime_id)
        for moved in result.migrated:
            _LOG.info("session %s failed over %s -> %s at epoch %d", moved.session_id,
                      moved.from_runtime, moved.to_runtime, moved.epoch)
        if self.on_sweep is not None:
            self.on_sweep(result)
        return result

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except (CPError, OSError) as exc:
                _LOG.warning("failover sweep failed (retrying): %s", exc)
            except Exception:  # a store error must not kill the monitor
                _LOG.exception("failover sweep failed (retrying)")
            await asyncio.sleep(self.interval_s)
