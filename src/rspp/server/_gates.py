"""Gate samples of live sessions, reported to the control plane (issue 18, NF-038).

Each served session has a :class:`GateSampler`: it feeds the session's records and
OR-02 evidence to a :class:`~rspp.observability.GateAccumulator` (the gate pairing of
``rspp slo report``) and, at every turn ``close``, hands the closed turns'
:class:`~rspp.observability.TurnGateSample` - tagged with pipeline name, version and
tenant - to the runtime's :class:`GateReporter`.

The reporter never slows a session: :meth:`GateReporter.offer` only appends to a
bounded queue (beyond the bound a sample is dropped and counted); one background
task sends batches to ``POST /v1/gates/samples``. While the control plane is slow or
down, batches stay queued (retried with backoff) until the bound drops them; every
dropped sample is counted in ``rspp_gate_samples_dropped_total``, logged once per
outage, and reported to the control plane with the next batch that gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass

import msgspec

from rspp.contracts import ControlSignal, SignalName
from rspp.controlplane import ControlPlaneClient, CPError
from rspp.controlplane._requests import GateSampleIn, GateSamplesRequest
from rspp.observability import GateAccumulator, OR02Evidence
from rspp.server._metrics import ServerMetrics

__all__ = ["GateReporter", "GateReporterOptions", "GateSampler"]

_LOG = logging.getLogger("rspp.server.gates")
_MAX_BACKOFF_S = 5.0


@dataclass(frozen=True, slots=True)
class GateReporterOptions:
    #: samples buffered while the control plane is slow or unreachable
    queue: int = 2048
    #: samples per request (the control plane accepts at most 500)
    batch: int = 100
    #: seconds between sends when fewer than ``batch`` samples are waiting
    interval_s: float = 1.0


class GateReporter:
    """The runtime's bounded, batched sender of gate samples (one background task)."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str, metrics: ServerMetrics,
                 options: GateReporterOptions | None = None) -> None:
        self.client = client
        self.runtime_id = runtime_id
        self.metrics = metrics
        self.options = options or GateReporterOptions()
        self._queue: deque[GateSampleIn] = deque()
        self._wake = asyncio.Event()
        self.sent = 0
        self.dropped = 0
        #: dropped since the last batch the control plane accepted (reported with the next)
        self._unreported = 0
        self._failing = False
        self._inflight = 0
        self._task: asyncio.Task[None] | None = None
        #: set after each send attempt (tests and drain wait on it, never on time)
        self.attempted = asyncio.Event()

    @property
    def queued(self) -> int:
        """Samples not yet accepted by the control plane (queued or in flight)."""
        return len(self._queue) + self._inflight

    def offer(self, sample: GateSampleIn) -> None:
        """Queue one sample (never blocks). Beyond the bound (queued + in flight) the
        oldest queued sample is dropped, or this one when only the batch in flight is
        older; every drop is counted."""
        if self.queued >= self.options.queue:
            if self._queue:
                self._queue.popleft()
                self._queue.append(sample)
            self._drop(1)
        else:
            self._queue.append(sample)
        self.metrics.gate_samples_queued(self.queued)
        if len(self._queue) >= self.options.batch:
            self._wake.set()

    def _drop(self, n: int) -> None:
        if self._unreported == 0:  # once per outage (until a batch gets through)
            _LOG.warning("gate samples: queue full (%d); dropping the oldest (counted in "
                         "rspp_gate_samples_dropped_total)", self.options.queue)
        self.dropped += n
        self._unreported += n
        self.metrics.gate_samples_dropped(n)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="rspp-gates")

    async def stop(self, flush: bool = True) -> None:
        """Stop the sender; one last send of what is queued when ``flush``."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if flush and self._queue:
            with contextlib.suppress(CPError):
                await self._send_one()

    async def run(self) -> None:
        backoff = self.options.interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                while self._queue:
                    await self._send_one()
                backoff = self.options.interval_s
            except CPError as exc:
                backoff = min(_MAX_BACKOFF_S, max(backoff * 2, self.options.interval_s))
                if not self._failing:
                    self._failing = True
                    _LOG.warning("gate samples: control plane unavailable (%s); %d queued, "
                                 "retrying", exc.message, len(self._queue))
            finally:
                self.attempted.set()

    async def _send_one(self) -> None:
        n = min(self.options.batch, len(self._queue), 500)
        batch = [self._queue.popleft() for _ in range(n)]
        body = GateSamplesRequest(runtime_id=self.runtime_id, samples=tuple(batch),
                                  dropped=self._unreported)
        self._inflight = n
        try:
            await self.client.request("POST", "/v1/gates/samples", json=body)
        except CPError:
            # not delivered: back to the front of the queue (offer kept the bound)
            self._queue.extendleft(reversed(batch))
            raise
        else:
            self._unreported -= body.dropped
            self.sent += n
            self.metrics.gate_samples_sent(n)
        finally:
            self._inflight = 0
            self.metrics.gate_samples_queued(self.queued)
        if self._failing:
            self._failing = False
            _LOG.info("gate samples: control plane reachable again; %d sample(s) dropped "
                      "while it was not", self.dropped)


class GateSampler:
    """One served session's gate evidence; closed turns go to the reporter."""

    def __init__(self, reporter: GateReporter, *, pipeline_name: str, pipeline_version: str,
                 tenant_id: str) -> None:
        self.reporter = reporter
        self.tags = (pipeline_name, pipeline_version, tenant_id)
        self._acc = GateAccumulator()
        self.errors = 0

    def on_record(self, rec: msgspec.Struct) -> None:
        try:
            self._acc.add_struct(rec)
            if isinstance(rec, ControlSignal) and rec.signal is SignalName.CLOSE:
                name, version, tenant = self.tags
                for sample in self._acc.closed_turns():
                    self.reporter.offer(GateSampleIn(pipeline_name=name,
                                                     pipeline_version=version,
                                                     tenant_id=tenant, sample=sample))
        except Exception:  # gate sampling never breaks a session
            self.errors += 1
            self.reporter.metrics.gate_sampler_error()

    def on_evidence(self, evidence: object) -> None:
        try:
            found = evidence if isinstance(evidence, OR02Evidence) else \
                msgspec.convert(evidence, OR02Evidence)
            self._acc.add_struct(found)
        except Exception:
            self.errors += 1
            self.reporter.metrics.gate_sampler_error()
