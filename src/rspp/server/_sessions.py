"""Sessions governed by the control plane (F-103, F-156, F-157, F-106).

:class:`GovernedSessions` is how a transport endpoint of ``rspp serve`` gets a
live session. A session starts only when its token verifies locally, the
control plane's record matches it (tenant, runtime, not ended) and this
runtime holds its lease: the route's pipeline version (rollout cohort) is
fetched and compiled once per version, the session is assembled with the same
builder ``rspp run`` uses (:func:`rspp.runner._assembly.assemble_session`, via
the transport's :class:`SessionBuilder`) at the lease epoch, its turn plans
read the control plane's turn-start bundle (snapshot versions in every plan's
provenance), and a :class:`LeaseKeeper` renews the lease and feeds rotations
and loss to the turn driver. Draining stops admitting, lets active turns
finish within a deadline, then closes every session with a reason.

State (F-155): every session's :class:`~rspp.turns.StateManager` is backed by the
control plane (:class:`ControlPlaneStateStore`); a :class:`SessionCheckpointer`
saves its session-hot state and resume point at each turn's open and close. A
session that resumes here after a failover or migration (lease epoch > 1) loads the
last checkpoint before it is built - nodes start with their restored state (the
conversation history) - then its timeline records the control plane's migration
markers, its ids continue from the checkpoint (turn ids never repeat) and a turn the
previous runtime left open ends here (T8: ``deauthorized_drain``,
``abort(authority_loss)``, ``close``), reported to the client first on the new
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from rspp.contracts import ControlSignal, RecordingLevel, SignalName, TurnStartBundle
from rspp.controlplane import CPError, SessionClaims, SessionInfo, TenantPlacement
from rspp.controlplane._notices import RuntimeNotice
from rspp.controlplane._requests import ArtifactLocation
from rspp.kernel import DEFAULT_MAX_SKEW_MS, SystemClock
from rspp.observability import DebugCaptureSlots, HttpExportSink, SamplingPolicy, TimelineSink
from rspp.providers import CircuitRegistry, HttpClientPool, HttpPoolLimits, ProviderBatcher
from rspp.runner import TelemetryTargets
from rspp.runner._assembly import AssembledSession, AssemblyError, AssemblyOptions
from rspp.server._artifacts import ArtifactSite, artifact_roots
from rspp.server._capacity_control import CapacityControl, CapacityEvent, record_capacity_event
from rspp.server._cplink import ControlPlaneLink, SessionRefused, _refusal
from rspp.server._fairness import FairnessSlo, runtime_pool
from rspp.server._gates import GateReporter, GateSampler
from rspp.server._headroom import PoolHeadroom
from rspp.server._lease import ControlPlaneSnapshots, LeaseKeeper
from rspp.server._metrics import ServerMetrics
from rspp.server._state import ControlPlaneStateStore
from rspp.server._timeline_signing import TimelineSigner
from rspp.spec import GraphDefinition
from rspp.transports import LiveTransport
from rspp.turns import (
    CapacityModel,
    LocalAdmission,
    ResumePoint,
    SessionCheckpointer,
    StateManager,
    resume_session,
)

_HANDOFF_SIGNALS = frozenset({SignalName.MIGRATION_START, SignalName.LEASE_ROTATED,
                              SignalName.SESSION_HANDOFF, SignalName.MIGRATION_FINISH})

__all__ = ["BuiltSession", "GovernedSessions", "ServedSession", "SessionBuilder",
           "SessionPolicy"]

_LOG = logging.getLogger("rspp.server")

#: how long a drain hand-off waits for the turn it ended at the deadline to close
_TURN_END_S = 2.0

#: the reason an operator's hand-off gives the turn it ends (by the hand-off's action)
_HANDOFF_REASONS = {"migrate": "handed_off", "revoke": "lease_revoked"}


class BuiltSession(Protocol):
    """A transport's live session as the governor needs it."""

    @property
    def core(self) -> AssembledSession[Any]: ...

    async def close(self, reason: str) -> None:
        """Close the client connection with ``reason`` and finish the session."""

    async def wait_closed(self) -> None: ...


S = TypeVar("S", bound=BuiltSession)


class SessionBuilder(Protocol[S]):  # type: ignore[misc]
    """Builds (and starts) one transport session of ``graph`` with assembly ``options``."""

    async def __call__(self, graph: GraphDefinition, options: AssemblyOptions) -> S: ...


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How this runtime runs its sessions."""

    lease_ttl_ms: int = 6_000
    #: lease renewal period (None: a third of the TTL); how soon a rotation is noticed
    lease_renew_ms: int | None = None
    #: a session's timeline goes to ``<timeline_dir>/<session_id>.jsonl`` when set (the
    #: storage root in the runtime's own region)
    timeline_dir: Path | None = None
    #: further storage roots by region (F-168; :mod:`rspp.server._artifacts`)
    artifact_dirs: dict[str, Path] = field(default_factory=dict)
    #: or to this URL, posted asynchronously with retries (F-154), and the recorder's
    #: buffer of what is not exported yet (items; None: a large default; F-176)
    timeline_export_url: str | None = None
    timeline_buffer: int | None = None
    record_level: RecordingLevel | None = None
    #: share of sessions whose timelines record events (F-071; decided per session id,
    #: deterministically); the others keep only their OR-02 evidence
    sample_rate: float = 1.0
    #: on drain, once turns finished: ``close`` each session (it ends) or ``migrate`` it
    #: (the control plane moves it to another runtime; the client reconnects there)
    drain_mode: str = "close"
    #: kernel overhead budget per event, microseconds (telemetry counts samples over it)
    kernel_overhead_budget_us: float | None = None
    #: sessions that may capture debug events at once (F-076; the ``debug`` message)
    max_debug_captures: int = 1
    #: bounds of the provider HTTP connections the sessions share (F-105)
    provider_http: HttpPoolLimits = field(default_factory=HttpPoolLimits)
    #: in-band metrics events (F-026) at every turn's end and the session's
    metrics_events: bool = False
    #: the wall-clock skew a session's timebase tolerates (NF-018, ``--max-skew-ms``)
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS
    #: turns open at once and the interactive-only headroom (F-172, F-173; None: unbounded)
    capacity: CapacityModel | None = None
    #: slots per node type shared by every session (F-105, F-109) and whose turn comes
    #: first when they are all taken: ``tenant`` (round-robin across tenants) or
    #: ``session`` (across sessions) (F-174)
    pool_limits: dict[str, int] = field(default_factory=dict)
    pool_fairness: str = "tenant"
    #: the longest a tenant may wait for a pool slot (NF-033; None: waits only measured)
    fairness_slo: FairnessSlo | None = None
    #: pool loads at which new turns are deferred (F-172; None: open turns only)
    headroom: PoolHeadroom | None = None


@dataclass(slots=True)
class ServedSession(Generic[S]):
    """One live served session: the transport's session, its claims, lease and CP record."""

    claims: SessionClaims
    info: SessionInfo
    built: S
    keeper: LeaseKeeper
    owner: GovernedSessions
    close_reason: str | None = None
    #: the session moved to another runtime (drain hand-off): it is not ended here
    handed_off: bool = False
    #: the epoch the session had before it moved here (a resume after migration/failover)
    resumed_from_epoch: int | None = None
    #: saves the session's checkpoints at turn boundaries (F-155)
    checkpoints: SessionCheckpointer | None = None
    #: the checkpoint this session resumed from (None: a new session, or none was saved)
    resumed: ResumePoint | None = None
    #: where its turn-start snapshots come from (refreshed when its authority moves)
    snapshots: ControlPlaneSnapshots | None = None
    #: its timeline file (None: exported, or not recorded), signed when closed (F-169)
    timeline: Path | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    _keeper: asyncio.Task[None] | None = None
    _watcher: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str:
        return self.claims.session_id

    @property
    def core(self) -> AssembledSession[Any]:
        return self.built.core

    @property
    def epoch(self) -> int:
        return self.core.authority.epoch

    def _on_record(self, rec: msgspec.Struct) -> None:
        if self.core.driver.busy:
            self.idle.clear()
        else:
            self.idle.set()
        if isinstance(rec, ControlSignal):
            self.owner.metrics.on_signal(self.core, rec)

    def stale_ingress(self, epoch: int) -> bool:
        """A connection presents lease ``epoch``: False (and T12 recorded) when it is stale."""
        return self.core.driver.check_ingress_epoch(epoch, f"{self.session_id}:connect@{epoch}")

    def _on_authority(self, epoch: int | None, reason: str) -> None:
        self.core.authority_changed(epoch, reason)
        if epoch is None and reason.startswith("handed_off:"):
            # released to another runtime (an operator's migration): it lives on there
            self.handed_off = True
            self.owner._spawn(self.close(reason))
        elif epoch is None:  # lost: nothing may be produced for this session any more
            self.owner._spawn(self.close(f"authority_lost:{reason}"))

    async def _on_handoff(self, action: str) -> None:
        """The control plane hands the lease off (an operator's migrate, rotate, revoke):
        before the lease is released, the session's output is fenced and its active turn
        ends here, under the lease that ran it (T8 ``deauthorized_drain``,
        ``abort(authority_loss)``, ``close``), and its last checkpoint is saved (it has
        no open turn: the next holder does not end the turn again). Bounded by what is
        left of the lease (the control plane rotates it at its expiry anyway).

        A rotation in place keeps the session here: its gate holds while the lease is
        released and the turn ends on the rotation itself (fenced before the gate opens
        again at the new epoch), as a rotation always did."""
        self.owner.metrics.handoff(self.keeper.learned[-1] if self.keeper.learned else "")
        if action == "rotate":
            return
        self.core.authority_changed(None, _HANDOFF_REASONS.get(action, "handed_off"))
        left = max(0.1, self.keeper.valid_for())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), min(_TURN_END_S, left))
        if self.checkpoints is not None:
            await self.checkpoints.flush(timeout_s=max(0.1, min(2.0, self.keeper.valid_for())))

    async def close(self, reason: str) -> None:
        """Close the client connection and the session with ``reason``."""
        if self.close_reason is None:
            self.close_reason = reason
        await self.built.close(reason)
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            await asyncio.wait({self._watcher})

    async def _watch(self) -> None:
        """When the transport session ends: stop renewing, report it ended, forget it."""
        try:
            await self.built.wait_closed()
        finally:
            if self._keeper is not None:
                self._keeper.cancel()
                await asyncio.wait({self._keeper})
            if self.checkpoints is not None:
                # the session's last checkpoint (a lost lease: it still counts until the
                # new holder took the state over)
                await self.checkpoints.flush(timeout_s=2.0)
                await self.checkpoints.aclose()
            if self.owner.timeline_signer is not None and self.timeline is not None:
                await self.owner.timeline_signer.sign(self.timeline, self.session_id)
            metrics = self.owner.metrics
            transport = getattr(self.core, "transport", None)
            if isinstance(transport, LiveTransport):
                metrics.fenced(transport.fenced_outputs)
            if self.handed_off:
                metrics.moved("handed_off")
            elif self.keeper.lost is not None:
                metrics.moved("authority_lost")
            # a session handed to another runtime (drain) lives on there: not ended
            with contextlib.suppress(CPError):
                if not self.handed_off and await self._still_placed_here():
                    # why it ended: closed here, or by the live session itself (its
                    # resume window after a disconnect, the client's end): audited (F-091)
                    handle = getattr(self.built, "handle", None)
                    await self.owner.link.client.report_status(
                        self.session_id, "ended", summary=self.core.usage_summary(),
                        reason=self.close_reason or getattr(handle, "close_reason", None))
            self.owner._forget(self)

    async def _still_placed_here(self) -> bool:
        """Whether the control plane still places this session here: after a migration the
        session lives on at its new runtime, so closing the old copy must not end it."""
        reason = self.close_reason or ""
        if not reason.startswith("authority_lost:"):
            return True
        if reason.endswith(":lease_expired_control_plane_unreachable"):
            # the control plane did not answer: the session is not over; its client comes
            # back (here or where the control plane moves it) and it resumes from its
            # checkpoint
            return False
        info = await self.owner.link.client.request("GET", f"/v1/sessions/{self.session_id}")
        return bool(info.get("runtime_id") in (None, self.owner.link.runtime_id))


@dataclass(frozen=True, slots=True)
class _Reads:
    """What the control plane answered a session's start."""

    info: SessionInfo
    epoch: int
    #: where a resumed session continues (None: a new session, or no checkpoint)
    point: ResumePoint | None
    bundle: TurnStartBundle
    #: the control signals of a resumed session (its migration markers); [] for a new one
    signals: list[ControlSignal]
    #: the tenant's placement policy (None: none, or a control plane without the start route)
    residency: TenantPlacement | None = None


def _export_sink(url: str | None) -> Callable[[str], TimelineSink] | None:
    """A session's durable timeline export to ``url`` (None: none)."""
    if url is None:
        return None
    return lambda session_id: HttpExportSink(url, session_id)


def _timeline_path(directory: Path, sid: str) -> Path:
    """Where the session's timeline goes: ``<directory>/<sid>.jsonl``. An earlier run of the
    session on this runtime (it moved away and came back) is kept beside it, renamed
    ``<sid>.<n>.jsonl``, instead of being overwritten with its committed turns."""
    path = directory / f"{sid}.jsonl"
    if path.exists():
        n = 1
        while (directory / f"{sid}.{n}.jsonl").exists():
            n += 1
        path.rename(directory / f"{sid}.{n}.jsonl")
    return path


async def _settled(futures: list[asyncio.Future[Any]]) -> None:
    """Cancel what a start no longer needs (it was refused) and collect every result."""
    for f in futures:
        if not f.done():
            f.cancel()
    await asyncio.gather(*futures, return_exceptions=True)


class GovernedSessions:
    """The runtime's live sessions, started and governed through the control plane."""

    def __init__(self, link: ControlPlaneLink, metrics: ServerMetrics,
                 policy: SessionPolicy | None = None) -> None:
        self.link = link
        self.metrics = metrics
        self.policy = policy or SessionPolicy()
        #: the runtime's debug-capture slots, shared by its sessions (F-076)
        self.debug_slots = DebugCaptureSlots(self.policy.max_debug_captures, SystemClock())
        #: the runtime's circuit breakers (F-057) and admission (F-050, per-tenant quotas
        #: across its sessions), shared by every session it serves
        self.circuits = CircuitRegistry()
        #: the runtime's provider HTTP connections, shared by its sessions (F-105)
        self.http_pool = HttpClientPool(self.policy.provider_http)
        #: the runtime's dynamic batching of compatible provider calls (F-051)
        self.batcher = ProviderBatcher()
        metrics.watch_batching(self.batcher.stats)
        #: the runtime's execution pool (node-type slots shared by its sessions)
        self.pool = runtime_pool(self.policy.pool_limits, self.policy.pool_fairness,
                                 self.policy.fairness_slo, metrics)
        #: headroom thresholds tripping and clearing, recorded in live sessions (F-172)
        self.capacity_control = CapacityControl.of(self.policy.headroom, self.pool,
                                                   self._capacity_event)
        self.admission = LocalAdmission(SystemClock(), self.policy.capacity,
                                        self.capacity_control.probes)
        if self.admission.capacity is not None:
            self.admission.capacity.on_defer = self.capacity_control.deferred
        metrics.watch_admission(self.admission)
        metrics.watch_capacity(self.capacity_control)
        self.active: dict[str, ServedSession[Any]] = {}
        #: where sessions' artifacts are stored, by region (F-168)
        self.artifacts = artifact_roots(self.policy, link.options.region)
        self.draining = False
        #: where closed turns' gate samples go (None: not reported)
        self.gates: GateReporter | None = None
        #: signs each session's closed timeline file with a KMS key (F-169; None: not)
        self.timeline_signer: TimelineSigner | None = None
        self._background: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.active)

    def _capacity_event(self, event: CapacityEvent) -> None:
        for served in list(self.active.values()):
            record_capacity_event(served.core.session, event)

    def _spawn(self, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def on_notice(self, notice: RuntimeNotice) -> None:
        """The control channel: a hand-off of a lease this runtime holds began; the
        session holding it drains now (its renewal loop hands it off)."""
        served = self.active.get(notice.session_id)
        if served is not None and served.keeper.push_handoff(notice.action, notice.epoch):
            _LOG.info("session %s: hand-off (%s) of epoch %d pushed by the control plane",
                      notice.session_id, notice.action, notice.epoch)

    def verify(self, token: str, session_id: str) -> SessionClaims:
        """Local token check (signature, expiry, session, runtime); raises SessionRefused."""
        try:
            return self.link.verify(token, session_id)
        except SessionRefused as exc:
            self.metrics.refused(exc.code)
            raise

    async def open(self, claims: SessionClaims, build: SessionBuilder[S]) -> ServedSession[S]:
        """Start the session of verified ``claims``; raise :class:`SessionRefused`."""
        try:
            return await self._open(claims, build)
        except SessionRefused as exc:
            self.metrics.refused(exc.code)
            raise

    async def _open(self, claims: SessionClaims, build: SessionBuilder[S]) -> ServedSession[S]:
        sid = claims.session_id
        if self.draining or self.link.draining:
            raise SessionRefused("draining", "this runtime is draining; route a new session")
        if sid in self.active:
            raise SessionRefused("session_live", f"session {sid} is already live here")
        if len(self.active) >= self.link.options.capacity:
            raise SessionRefused("at_capacity", "this runtime is at capacity")
        snapshots = ControlPlaneSnapshots(self.link.client, self.link.bundles)
        self.link.bundles.track(claims.tenant_id, sid, claims.pipeline_name)
        # the token names the pipeline version: its spec is fetched (once per version)
        # alongside the control plane's answer about the session
        graph = asyncio.ensure_future(
            self.link.graph(claims.pipeline_name, claims.pipeline_version))
        try:
            return await self._start(claims, build, snapshots, graph)
        except BaseException:
            self.link.bundles.forget(sid)
            raise
        finally:
            await _settled([graph])

    async def _start(self, claims: SessionClaims, build: SessionBuilder[S],
                     snapshots: ControlPlaneSnapshots,
                     graph: asyncio.Future[GraphDefinition]) -> ServedSession[S]:
        sid = claims.session_id
        holder: list[ServedSession[S]] = []

        def on_change(epoch: int | None, reason: str) -> None:
            snapshots.refresh_next()  # the next turn's snapshots come fresh, not cached
            if holder:
                holder[0]._on_authority(epoch, reason)

        keeper = LeaseKeeper(self.link.client, sid, self.link.runtime_id,
                             ttl_ms=self.policy.lease_ttl_ms, on_change=on_change,
                             renew_ms=self.policy.lease_renew_ms, renewer=self.link.renewer)

        async def on_handoff(action: str) -> None:
            if holder:
                await holder[0]._on_handoff(action)

        keeper.on_handoff = on_handoff
        # a mid-session outage: turns open on the last bundle's expired snapshots while
        # the lease bound holds (issue 14), counted
        snapshots.authority = lambda: keeper.output_gate() is True
        snapshots.on_frozen = self.metrics.frozen_turn
        # the session's state lives in the control plane; a resumed session loads its last
        # checkpoint before it is built, so its nodes start with their restored state
        store = ControlPlaneStateStore(self.link.client, self.link.runtime_id,
                                       lambda: keeper.epoch or claims.lease_epoch,
                                       self.link.states)
        state = StateManager(sid, store)
        started = time.monotonic()
        reads = None
        if self.link.start_in_one:
            reads = await self._reads_in_one(claims, keeper, store, state, snapshots, started)
        if reads is None:  # a control plane without the start route
            reads = await self._reads_in_calls(claims, keeper, state, snapshots)
        self.metrics.session_start(reads.epoch > 1, "control_plane", time.monotonic() - started)
        served = await self._built(claims, build, snapshots, graph, keeper, state, holder,
                                   reads)
        self.metrics.session_start(claims.lease_epoch > 1, "total", time.monotonic() - started)
        return served

    async def _reads_in_one(self, claims: SessionClaims, keeper: LeaseKeeper,
                            store: ControlPlaneStateStore, state: StateManager,
                            snapshots: ControlPlaneSnapshots, started: float) -> _Reads | None:
        """The start in one request and one control-plane transaction (record, lease,
        checkpoint take-over, signals, bundle); None: the control plane has no such route."""
        sid = claims.session_id
        reply = await self.link.start_session(claims, self.policy.lease_ttl_ms)
        if reply is None:
            return None
        if reply.lease is None:  # the record did not match (named by the checks) or moved
            raise SessionRefused("lease_refused", f"the control plane did not give {sid}'s "
                                 "lease to this runtime; route the session again")
        epoch = keeper.adopt(reply.lease, started)
        self._check_epoch(claims, epoch)
        point = None
        if epoch > 1 and reply.state is not None:
            store.taken_over(reply.state.version, reply.state.document)
            point = await self._resume_point(sid, state)
        if reply.bundle is None:
            raise SessionRefused("control_plane_unreachable", f"no turn-start bundle for {sid} "
                                 "from the control plane; the session is refused")
        self.link.bundles.track(claims.tenant_id, sid, reply.session.pipeline_name)
        self.link.bundles.prime(sid, reply.bundle)  # the first turn opens on it
        snapshots.last = reply.bundle
        return _Reads(info=reply.session, epoch=epoch, point=point, bundle=reply.bundle,
                      signals=list(reply.signals or ()), residency=reply.residency)

    async def _reads_in_calls(self, claims: SessionClaims, keeper: LeaseKeeper,
                              state: StateManager, snapshots: ControlPlaneSnapshots) -> _Reads:
        """The start in separate requests, all sent at once: the record check, the lease,
        a resume's checkpoint (the failover put the lease in this runtime's name at the
        token's epoch already, so its take-over need not wait for the acquire) and
        signals, the turn-start bundle."""
        sid = claims.session_id
        resumed = claims.lease_epoch > 1
        if resumed:
            snapshots.refresh_next()
        bundle_f = asyncio.ensure_future(snapshots.turn_start_bundle(
            tenant_id=claims.tenant_id, session_id=sid, pipeline_name=claims.pipeline_name,
            runtime_id=self.link.runtime_id))
        info_f = asyncio.ensure_future(self.link.session_info(claims))
        lease_f = asyncio.ensure_future(keeper.acquire())
        signals_f = asyncio.ensure_future(self._handoff_signals(sid)) if resumed else None
        state_f = asyncio.ensure_future(state.attach()) if resumed else None
        futures: list[asyncio.Future[Any]] = [
            f for f in (bundle_f, info_f, lease_f, signals_f, state_f) if f is not None]
        try:
            info = await info_f
            if info.runtime_id != self.link.runtime_id:
                raise SessionRefused("token_wrong_runtime",
                                     f"session {sid} now runs on {info.runtime_id}")
            try:
                epoch = await lease_f
            except CPError as exc:
                code = ("control_plane_unreachable" if exc.code == "unavailable"
                        and exc.field == "server" else "lease_refused")
                raise SessionRefused(code, f"cannot acquire the lease of {sid}: "
                                     f"{exc.message}") from None
            self._check_epoch(claims, epoch)
            point: ResumePoint | None = None
            signals: list[ControlSignal] = []
            if epoch > 1:
                try:
                    if state_f is not None:
                        await state_f
                except CPError as exc:
                    if exc.code != "stale_epoch":
                        raise _refusal(exc, f"load the state of {sid}") from None
                    state_f = None  # taken over only now that we hold it
                point = await self._resume_point(sid, state, loaded=state_f is not None)
                signals = await signals_f if signals_f is not None \
                    else await self._handoff_signals(sid)
            bundle = await bundle_f
            self.link.bundles.track(claims.tenant_id, sid, info.pipeline_name)
            return _Reads(info=info, epoch=epoch, point=point, bundle=bundle, signals=signals)
        finally:
            await _settled(futures)

    @staticmethod
    def _check_epoch(claims: SessionClaims, epoch: int) -> None:
        if claims.lease_epoch < epoch:
            raise SessionRefused("stale_epoch_reject",
                                 f"the token carries lease epoch {claims.lease_epoch}; the "
                                 f"session is at epoch {epoch}: request a new token")

    async def _resume_point(self, sid: str, state: StateManager, *,
                            loaded: bool = False) -> ResumePoint | None:
        """The resumed session's checkpoint (loaded into ``state``: now, or ``loaded``
        already) and where it continues."""
        try:
            return ResumePoint.of(state.session if loaded else await state.attach())
        except CPError as exc:
            raise _refusal(exc, f"load the state of {sid}") from None
        except msgspec.ValidationError as exc:  # a checkpoint this runtime cannot read
            _LOG.warning("session %s: its checkpoint's resume point is unreadable (%s); "
                         "it resumes without it", sid, exc)
            return None

    async def _built(self, claims: SessionClaims, build: SessionBuilder[S],
                     snapshots: ControlPlaneSnapshots, graph: asyncio.Future[GraphDefinition],
                     keeper: LeaseKeeper, state: StateManager,
                     holder: list[ServedSession[S]], reads: _Reads) -> ServedSession[S]:
        sid = claims.session_id
        info, epoch, point, bundle = reads.info, reads.epoch, reads.point, reads.bundle
        if (info.pipeline_name, info.pipeline_version) == (claims.pipeline_name,
                                                           claims.pipeline_version):
            gd = await graph
        else:
            gd = await self.link.graph(info.pipeline_name, info.pipeline_version)
        policy = bundle.policy_resolution
        if policy is not None and policy.insert_compliance_nodes:  # F-062
            gd = await self.link.policy_graph(info.pipeline_name, info.pipeline_version,
                                              claims.tenant_id, policy.insert_compliance_nodes)
        if bundle.admission_policy is None:
            raise SessionRefused("control_plane_unreachable",
                                 f"no admission snapshot for tenant {claims.tenant_id} from the "
                                 "control plane; the session is refused (no silent fallback)")
        p = self.policy
        site = self.artifacts.site_for(sid, claims.tenant_id, reads.residency)
        opts = AssemblyOptions(
            session_id=sid, tenant_id=claims.tenant_id, authority_epoch=epoch,
            enforce_budgets=True, record_level=p.record_level,
            sampling=SamplingPolicy(p.sample_rate) if p.sample_rate < 1.0 else None,
            timeline=_timeline_path(site.directory, sid) if site is not None else None,
            timeline_sink=_export_sink(p.timeline_export_url),
            timeline_buffer=p.timeline_buffer,
            telemetry=TelemetryTargets(
                metrics=self.metrics.runtime,
                kernel_overhead_budget_s=None if p.kernel_overhead_budget_us is None
                else p.kernel_overhead_budget_us / 1e6),
            snapshots=snapshots, admission_policy=bundle.admission_policy,
            runtime_id=self.link.runtime_id, state=state, debug_slots=self.debug_slots,
            circuits=self.circuits, http_pool=self.http_pool, batcher=self.batcher,
            admission=self.admission,
            priority=info.attributes.get("priority", "interactive"), pool=self.pool,
            metrics_events=p.metrics_events,
            max_skew_ms=p.max_skew_ms, on_clock_skew=self.metrics.clock_skew,
            fairness_key=claims.tenant_id if p.pool_fairness == "tenant" else None)
        try:
            built = await build(gd, opts)
        except AssemblyError as exc:
            raise SessionRefused("assembly_failed", str(exc)) from None
        served: ServedSession[S] = ServedSession(claims=claims, info=info, built=built,
                                                 keeper=keeper, owner=self,
                                                 snapshots=snapshots)
        holder.append(served)
        transport = getattr(built.core, "transport", None)
        if isinstance(transport, LiveTransport):
            # nothing leaves for the client once our bound on the lease lapsed: a paused or
            # partitioned runtime cannot talk over the runtime its session failed over to
            transport.gate = keeper.output_gate
            transport.on_jitter = self.metrics.jitter
            transport.on_lateness = self.metrics.egress_lateness
            transport.on_media_skew = self.metrics.media_skew
        checkpoints = SessionCheckpointer(built.core.driver, state,
                                          runtime_id=self.link.runtime_id)
        served.checkpoints, served.resumed = checkpoints, point
        served.timeline = opts.timeline
        if point is not None:
            checkpoints.resume_from(point)
        built.core.listeners.append(checkpoints.on_record)
        checkpoints.start()
        if epoch > 1:
            self._record_handoff(served, reads.signals)
        if point is not None:
            await self._resume(served, point)
        built.core.listeners.append(served._on_record)
        if self.gates is not None:
            sampler = GateSampler(self.gates, pipeline_name=info.pipeline_name,
                                  pipeline_version=info.pipeline_version,
                                  tenant_id=claims.tenant_id)
            built.core.listeners.append(sampler.on_record)
            built.core.evidence_listeners.append(sampler.on_evidence)
        served.idle.set()
        self.active[sid] = served
        served._keeper = self._spawn(keeper.run())
        served._watcher = self._spawn(served._watch())
        self._spawn(self._report_running(sid, site))  # not on the way to the client's ready
        self.metrics.session_opened()
        return served

    async def _report_running(self, sid: str, site: ArtifactSite | None) -> None:
        where = None if site is None else ArtifactLocation(
            region=site.region, location=str(site.directory / f"{sid}.jsonl"))
        with contextlib.suppress(CPError):
            await self.link.client.report_status(sid, "running", artifacts=where)

    async def _handoff_signals(self, sid: str) -> list[ControlSignal]:
        try:
            data = await self.link.client.request("GET", f"/v1/sessions/{sid}/signals")
        except CPError:
            return []
        return msgspec.convert(data.get("signals", []), list[ControlSignal])

    def _record_handoff(self, served: ServedSession[Any], signals: list[ControlSignal]) -> None:
        """A session resumed here after a migration or failover: its timeline starts with
        the control plane's markers of that move (``migration_start`` ... ``_finish``)."""
        starts = [i for i, sig in enumerate(signals) if sig.signal is SignalName.MIGRATION_START]
        if not starts:
            return
        for sig in signals[starts[-1]:]:
            if sig.signal in _HANDOFF_SIGNALS:
                served.core.recorder.append(sig)
        served.resumed_from_epoch = signals[starts[-1]].authority_epoch
        self.metrics.moved("resumed")

    async def _resume(self, served: ServedSession[Any], point: ResumePoint) -> None:
        """Continue from the previous owner's checkpoint: ids, idempotency window, and the
        end of the turn it left open (recorded before the client connects, so the client
        hears of it first)."""
        core = served.core
        interrupted = resume_session(core.driver, point,
                                     reason=f"session_moved_from:{point.runtime_id or 'unknown'}")
        if interrupted is not None:
            with contextlib.suppress(TimeoutError):
                await core.session.drain(timeout_s=5.0)

    async def supersede(self, served: ServedSession[Any], epoch: int) -> None:
        """A client presents lease ``epoch``, newer than ``served``'s: the session moved
        away and back, and this copy lost it (its keeper learns it at its next renewal).
        The copy is fenced (nothing more leaves) and dropped now, so the connection opens
        a new copy at ``epoch`` restored from the checkpoint instead of resuming this one;
        the session is not ended (it lives on in the new copy)."""
        reason = f"superseded_by_epoch:{epoch}"
        if served.keeper.lost is None:
            served.keeper.lost = reason
        served.handed_off = True
        served.core.authority_changed(None, reason)
        await served.close(f"authority_lost:{reason}")

    def _forget(self, served: ServedSession[Any]) -> None:
        if self.active.get(served.session_id) is served:
            del self.active[served.session_id]
            self.link.bundles.forget(served.session_id)
            self.metrics.session_closed()

    async def drain(self, deadline_s: float) -> None:
        """Stop admitting; let active turns finish within ``deadline_s``; close the rest."""
        self.draining = True
        sessions = list(self.active.values())
        if sessions and self.policy.drain_mode == "migrate":
            # each session moves as soon as its turn finished (or at the deadline)
            await asyncio.gather(*(self._hand_off(s, deadline_s) for s in sessions))
        elif sessions:
            waits = [asyncio.ensure_future(s.idle.wait()) for s in sessions]
            _, pending = await asyncio.wait(waits, timeout=deadline_s)
            for w in pending:
                w.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.close_all(None)

    async def _hand_off(self, served: ServedSession[Any], deadline_s: float) -> None:
        """Move a session to another runtime (drain ``migrate``); it keeps running there.

        Once its active turn finished (at most ``deadline_s``; a turn still running then
        ends here, ``abort(authority_loss)``), the control plane rotates the lease to the
        target (epoch + 1); this runtime stops sending at once and closes the connection
        with ``handed_off:<runtime>`` so the client reconnects through its route. Without a
        target the session closes as usual.
        """
        sid = served.session_id
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(served.idle.wait(), deadline_s)
        if served.close_reason is not None:
            return
        if not served.idle.is_set():
            # the deadline came mid-turn: the turn ends here, once, under the lease that
            # ran it (T8, ``authority_loss``), before the last checkpoint; that checkpoint
            # has no open turn, so the target does not end it a second time
            served.core.authority_changed(None, "handed_off")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(served.idle.wait(), _TURN_END_S)
        # the last checkpoint is saved while this runtime still holds the lease: the target
        # resumes from it (its conversation, turn counter, idempotency window)
        if served.checkpoints is not None:
            await served.checkpoints.flush(timeout_s=min(deadline_s, 5.0) or 1.0)
        # the gate closes before the control plane moves the lease: nothing more leaves
        # from here, and the renewal the move refuses is not taken for a lost lease; the
        # holder hands its own lease over (fenced already): the move is immediate
        epoch = served.keeper.epoch
        served.keeper.lost = "handed_off"
        try:
            moved = await self.link.client.migrate(
                sid, released_by=(self.link.runtime_id, epoch) if epoch is not None else None)
        except CPError as exc:
            _LOG.warning("session %s cannot be handed off (%s); it closes", sid, exc)
            return
        served.handed_off = True
        await served.close(f"handed_off:{moved.to_runtime}")

    async def close_all(self, reason: str | None) -> None:
        """Close every live session (``None``: say whether its turn finished first)."""
        for s in list(self.active.values()):
            why = reason or ("server_draining" if s.idle.is_set() else "drain_deadline_exceeded")
            await s.close(why)
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
