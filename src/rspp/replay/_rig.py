"""The session rig shared by recording and replay: kernel session + turn driver + recorder.

:class:`SessionRig` runs one :class:`~rspp.kernel.SessionActor` over a compiled
graph on a :class:`~rspp.kernel.VirtualClock`, with the Kernel II turn driver
(local admission, authority guard, plan resolver over an in-process turn-start
bundle) and a :class:`~rspp.observability.TimelineRecorder` receiving every
record: control signals, decision outcomes, transitions, plans, OR-02 evidence,
ingress events (edge ``input.<port>``, payload at L2), egress outputs (edge
``output.<port>``) and provider-node outputs (edge ``<node>.<port>``, causal
parent ``<node>#in<k>`` = the k-th input of that node). It is the loopback
transport of the recording: the first output of a turn reports playback
started, an ``eos`` output reports the reply complete (commit, T6).

The rig runs a live session (recording) when ``playback`` is None; with a
:class:`PlaybackStore` the provider nodes serve recorded outputs instead.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from rspp.contracts import (
    RecordingLevel,
    TurnStartBundle,
)
from rspp.kernel import (
    Event,
    EventKind,
    NodeRegistry,
    RuntimeGraph,
    SystemClock,
    VirtualClock,
    default_registry,
    to_record,
)
from rspp.kernel._timebase import Timebase
from rspp.observability._recorder import BufferedItem, RecorderOptions, TimelineRecorder
from rspp.replay._capabilities import RecordedCapabilities, TurnCapabilities
from rspp.replay._codec import compared_payload, encode_event
from rspp.replay._nodes import (
    PlaybackStore,
    ReplayRegistry,
    playback_class,
    recording_class,
    tie_break_ns,
)
from rspp.replay._session_factory import DriverHooks, RigSession, SessionFactory, kernel_session
from rspp.replay._transport import TransportFeedback
from rspp.spec import GraphDefinition
from rspp.turns._admission import AdmissionDecision, LocalAdmission
from rspp.turns._authority import AuthorityGuard
from rspp.turns._plan_resolver import PlanResolution, PlanResolver
from rspp.turns._snapshot_source import StaticSnapshotSource, in_process_bundle
from rspp.turns._turn_driver import TurnDriver

__all__ = ["DEFAULT_PROVIDER_NODE_TYPES", "AdmissionSource", "RigOptions", "SessionRig",
           "compared_line_of", "rig_bundle"]

DEFAULT_PROVIDER_NODE_TYPES = frozenset({"stt", "llm", "tts", "error_speech"})
_PACK = msgspec.msgpack.Encoder()
_PLAIN = msgspec.msgpack.Decoder(dict[str, Any])
_BIG = 1 << 20
#: yields to wait for an empty ready queue before falling back to state polling
_READY_SPINS = 256
_NO_QUEUE = object()  # a loop without a ready queue: poll the session state


class AdmissionSource(Protocol):
    """Where the turn driver's per-turn admission decisions come from."""

    def admit_turn(self, tenant_id: str, session_id: str, turn_id: str) -> AdmissionDecision: ...


@dataclass(frozen=True, slots=True)
class RigOptions:
    """Identity, epoch, time origin and recording level of one rig session."""

    session_id: str = "session-1"
    tenant_id: str = "local"
    runtime_id: str = "replay-rig"
    authority_epoch: int = 1
    start_wall_ms: int = 1_700_000_000_000
    recording_level: RecordingLevel = RecordingLevel.L2
    provider_node_types: frozenset[str] = DEFAULT_PROVIDER_NODE_TYPES
    #: (snapshot name, snapshot id, version) taken from a recorded plan's provenance
    snapshot_refs: tuple[tuple[str, str, int], ...] = ()
    #: run on the system clock, pacing ingress in real time (recording sessions whose
    #: providers work in threads or over the network); replays always use virtual time
    real_time: bool = False
    #: recorded turn-start wall clock per turn id (the plan's captured nondeterministic
    #: input ``turn_start_wall_ms``); the replay substitutes it when it freezes the plan
    turn_walls: tuple[tuple[str, int], ...] = ()
    #: recorded capability snapshots per turn id (the plan's ``capability:*`` inputs, F-161)
    turn_capabilities: tuple[tuple[str, TurnCapabilities], ...] = ()
    #: written to ``scope`` of every event record the rig makes (replays: the replay modes)
    tag: str | None = None
    #: False: turn budgets are reported, never terminate a turn (as the recording did)
    enforce_budgets: bool = True


def rig_bundle(gd: GraphDefinition, opts: RigOptions) -> TurnStartBundle:
    """The in-process turn-start bundle (six snapshots) of a rig session."""
    return in_process_bundle(
        gd, now_ms=opts.start_wall_ms, tenant_id=opts.tenant_id, runtime_id=opts.runtime_id,
        recording_level=opts.recording_level, id_prefix="rig",
        refs={name: (sid, ver) for name, sid, ver in opts.snapshot_refs},
    )


class SessionRig:
    """One recorded kernel session on virtual time (see the module docstring)."""

    def __init__(
        self,
        gd: GraphDefinition,
        *,
        registry: NodeRegistry | None = None,
        options: RigOptions | None = None,
        admission: AdmissionSource | None = None,
        playback: PlaybackStore | None = None,
        invocations: Callable[[str], tuple[Any, ...]] | None = None,
        external_transport: bool = False,
        session_factory: SessionFactory | None = None,
    ) -> None:
        """``invocations``: a turn's provider invocations for its evidence (recorded ones in
        playback); ``external_transport``: playback start/completion come from
        :attr:`feedback` (a recorded transport), not from the outputs;
        ``session_factory`` builds the kernel session with what its nodes need (default:
        :func:`~rspp.replay.kernel_session`, a bare session)."""
        opts = options or RigOptions()
        if opts.real_time:  # snapshots are issued "now" on the real wall clock
            opts = dataclasses.replace(opts, start_wall_ms=SystemClock().wall_ms())
        self.options = opts
        self.gd = gd
        self.clock: VirtualClock | SystemClock = (
            SystemClock() if opts.real_time
            else VirtualClock(start_wall_ms=opts.start_wall_ms, auto_advance=False))
        #: the clock when it is virtual (the per-frame checks test this, not the type)
        self._virtual: VirtualClock | None = (
            self.clock if isinstance(self.clock, VirtualClock) else None)
        self.recorder = TimelineRecorder(self.clock, RecorderOptions(
            level=opts.recording_level, capacity=_BIG, control_reserve=_BIG,
            evidence_reserve=_BIG))
        self.lines: list[dict[str, object]] = []
        #: every new line, whole, as it is flushed (a streamed replay writes it out)
        self.sink: Callable[[dict[str, object]], None] | None = None
        #: a streamed replay takes each line here instead of keeping it in :attr:`lines`
        self.keep: Callable[[dict[str, object]], None] | None = None
        #: instead of :attr:`keep`: the new records themselves, a batch per flush (a
        #: streamed comparison that reads the structs: no line is built for it)
        self.keep_items: Callable[[list[BufferedItem]], None] | None = None
        #: lines flushed so far (kept in :attr:`lines` or handed to :attr:`keep`)
        self.flushed = 0
        self.playback = playback
        base = registry or default_registry
        wrap: Callable[[type[Any]], type[Any]]
        if playback is not None:
            wrap = lambda c: playback_class(c, playback, self._log_output, self._hooks)  # noqa: E731
        else:
            wrap = lambda c: recording_class(c, self._log_output)  # noqa: E731
        reg = ReplayRegistry(base, opts.provider_node_types, wrap)
        factory = session_factory or kernel_session
        graph = RuntimeGraph.from_definition(gd)
        if playback is not None:
            # a recorded provider latency is replayed inside the node's process call: the
            # node budget was enforced (or not) when it was recorded, never again on replay
            graph = dataclasses.replace(graph, nodes=tuple(
                dataclasses.replace(n, timeout_ms=None)
                if n.type.partition("@")[0] in opts.provider_node_types else n
                for n in graph.nodes))
        self.session = factory(RigSession(
            graph, session_id=opts.session_id,
            pipeline_version=gd.version, registry=reg, clock=self.clock,
            output_sink=self._on_output, signal_sink=self._append,
            chains={p.modality: (p.primary, *p.fallbacks) for p in gd.providers},
            authority_epoch=opts.authority_epoch, hooks=DriverHooks(lambda: self.driver)))
        self.timebase = Timebase(self.clock)
        if playback is not None:
            playback.now_ns = self.timebase.runtime_ns
            # an input a playback node has no recorded output for is counted as it is
            # routed (no worker wake-up per audio frame; see NodeHost.take_directly)
            for host in self.session.hosts.values():
                take = getattr(host.node, "take_direct", None)
                if host.is_async and take is not None:
                    host.take_directly(take)
        self.bundle = rig_bundle(gd, opts)
        self.authority = AuthorityGuard(opts.authority_epoch)
        # the kernel's own signals (drop notices, watermarks) carry the epoch, as live
        self.session.signals.authority_epoch = self.authority.epoch
        if admission is None:
            local = LocalAdmission(self.clock)
            if self.bundle.admission_policy is not None:
                local.set_policy(self.bundle.admission_policy)
            local.admit_session(opts.tenant_id, opts.session_id)
            admission = local
        resolver = PlanResolver(gd, StaticSnapshotSource(self.bundle), self.clock,
                                runtime_id=opts.runtime_id)
        if opts.turn_walls:
            resolver = _PinnedWallResolver(gd, StaticSnapshotSource(self.bundle), self.clock,
                                           runtime_id=opts.runtime_id,
                                           walls=dict(opts.turn_walls))
        resolver.capabilities = RecordedCapabilities(dict(opts.turn_capabilities))
        self.driver = TurnDriver(
            self.session, resolver,
            tenant_id=opts.tenant_id, authority=self.authority,
            admission=admission,  # type: ignore[arg-type]
            record=self._append, evidence=self.recorder.append_evidence,
            invocations=invocations, enforce_budgets=opts.enforce_budgets)
        self.feedback = TransportFeedback(self.driver, self._append, self.authority.epoch,
                                          self.timebase, self.clock) if external_transport else None
        self._playing: set[str] = set()
        #: ``input.<port>`` per ingress port (made once)
        self._input_edges: dict[str, str] = {}
        #: (loop, its ready queue) (see :meth:`_quiesce`), looked up once per loop
        self._ready: tuple[asyncio.AbstractEventLoop, Any] | None = None
        #: the reply outputs each turn has yet to end (its reply ends when none is left)
        self._reply_ports = graph.reply_ports()
        self._open_ports: dict[str, set[str]] = {}
        self._ended: set[str] = set()

    def _append(self, record: msgspec.Struct) -> None:
        self.recorder.append(record)

    def _hooks(self, session_id: str) -> TurnDriver | None:
        return self.driver if session_id == self.options.session_id else None

    # ------------------------------------------------------------ recording
    @property
    def compared_only(self) -> bool:
        """The lines are only compared, never written (a streamed replay without
        ``--timeline-out``): payloads the comparator does not read are not encoded."""
        return self.sink is None and (self.keep is not None or self.keep_items is not None)

    def _record(self, ev: Event, edge_id: str, *, parent: str | None = None,
                encoded: tuple[Any, Any] | None = None) -> None:
        if encoded is None:
            encoded = compared_payload(ev) if self.compared_only else encode_event(ev)
        payload_class, payload = encoded
        runtime_ms, wall_ms = self.timebase.stamps_ms()
        rec = to_record(ev, session_id=self.options.session_id,
                        pipeline_version=self.gd.version, runtime_ms=runtime_ms,
                        wall_ms=wall_ms, edge_id=edge_id,
                        payload_class=payload_class, authority_epoch=self.authority.epoch,
                        causal_parent_id=parent, scope=self.options.tag)
        self.recorder.append(rec, payload)

    def _log_output(self, node_id: str, port: str, ev: Event, ordinal: int) -> None:
        self._record(ev, f"{node_id}.{port}", parent=f"{node_id}#in{ordinal}")

    def _on_output(self, port: str, ev: Event) -> None:
        if ev.kind in (EventKind.TURN_START, EventKind.TURN_END):
            return  # kernel boundary markers; the lifecycle records cover them
        tid = ev.turn_id
        end = ev.kind == EventKind.STREAM_END  # derived by the kernel, not recorded
        if not end:
            self._record(ev, f"output.{port}")
        if tid is None:
            return
        ended = self._reply_ended(port, tid) if end or (ev.attrs or {}).get("eos") \
            or ev.kind == EventKind.AUDIO_END else False
        if end:
            if ended:
                if self.feedback is not None:
                    self.driver.generation_complete(tid)
                else:
                    self.driver.output_complete(tid)
            return
        if self.feedback is not None:  # a recorded transport reports playback (feedback)
            self.feedback.output(port, tid)
            if ended:
                self.driver.generation_complete(tid)
            return
        if tid not in self._playing:
            self._playing.add(tid)
            self.driver.playback_started(tid)
        if ended:
            self.driver.output_complete(tid)

    def _reply_ended(self, port: str, tid: str) -> bool:
        """The end of ``port``'s stream (``eos``, ``audio_end``, ``stream_end``) ends the
        last open output of ``tid``'s reply (as the live transports decide: every reply
        output must end)."""
        left = self._open_ports.setdefault(tid, set(self._reply_ports))
        if not left and tid in self._ended:
            return False
        left.discard(port)
        if left:
            return False
        self._ended.add(tid)
        return True

    # ------------------------------------------------------------- driving
    async def start(self) -> None:
        await self.session.start()
        self.flush()

    async def advance_to(self, runtime_ms: int, runtime_sequence: int | None = None) -> None:
        """Move to ``runtime_ms`` of this session (see :meth:`_run_until`), or wait in real time.

        With ``runtime_sequence`` (a recorded record's) virtual time goes to its place inside
        the millisecond, so same-millisecond records keep their recorded order.
        """
        target_ns = runtime_ms * 1_000_000
        if runtime_sequence is not None:
            target_ns = tie_break_ns(runtime_ms, runtime_sequence)
        if isinstance(self.clock, VirtualClock):
            await self._run_until(target_ns)
            return
        delta = target_ns - self.timebase.runtime_ns()
        if delta > 0:
            await asyncio.sleep(delta / 1e9)

    def advance_now(self, runtime_ms: int, runtime_sequence: int) -> bool:
        """:meth:`advance_to` done at once, without a coroutine, when it is only a jump of
        virtual time (nothing runnable, no sleeper due by the target); False: await
        :meth:`advance_to` instead. (Once per replayed frame: the checks are inline.)"""
        clock = self._virtual
        if clock is None:
            return False
        ready = self._ready_queue()
        if ready is _NO_QUEUE or ready:
            return False
        return clock.jump_if_idle(runtime_ms * 1_000_000 + runtime_sequence % 1_000_000)

    def settled_now(self) -> bool:
        """On virtual time with nothing runnable, :meth:`settle` has nothing to wait for."""
        if self._virtual is None:
            return False
        ready = self._ready_queue()
        return ready is not _NO_QUEUE and not ready

    @property
    def virtual_clock(self) -> VirtualClock | None:
        """The session clock when it is virtual (a replay's default), else None."""
        return self._virtual

    def idle_queue(self) -> Any:
        """The running loop's ready queue on virtual time, else None: the feed loop holds it
        for a whole feed (one loop) and checks it inline per frame - empty: :meth:`advance_now`
        is ``virtual clock.jump_if_idle`` and :meth:`settled_now` is true."""
        if self._virtual is None:
            return None
        ready = self._ready_queue()
        return None if ready is _NO_QUEUE else ready

    def _ready_queue(self) -> Any:
        """The running loop's ready queue (:data:`_NO_QUEUE` if it has none)."""
        loop = asyncio.get_running_loop()
        cached = self._ready
        if cached is None or cached[0] is not loop:
            cached = self._ready = (loop, getattr(loop, "_ready", _NO_QUEUE))
        return cached[1]

    def _runnable(self) -> bool:
        """Whether :meth:`_quiesce` has anything to wait for (a task is ready to run, or
        the loop has no ready queue to tell); False skips it without a coroutine."""
        ready = self._ready_queue()
        return ready is _NO_QUEUE or bool(ready)

    async def _quiesce(self) -> None:
        """Let every runnable task run until nothing is left to run (at the current time).

        The event loop's ready queue is the scheduler's own record of what can run: when
        it is empty while this task runs, every other task is blocked (on the virtual
        clock, a queue, the next ingress), so the session cannot change until time moves
        or input comes. Checked on entry (nothing was woken: no yield at all) and after
        each yield. A loop without that queue (or a task that keeps itself runnable by
        polling) falls back to waiting until the session state stops changing.
        """
        ready = self._ready_queue()
        if ready is not _NO_QUEUE:
            for _ in range(_READY_SPINS):
                if not ready:
                    return
                await asyncio.sleep(0)
        last: tuple[Any, ...] | None = None
        stable = 0
        for _ in range(100_000):
            await asyncio.sleep(0)
            state = (self.session._seq, self.recorder.buffered, self.session.idle(),
                     self.session.output_count,
                     self.clock.pending_timers if isinstance(self.clock, VirtualClock) else 0)
            stable = stable + 1 if state == last else 0
            last = state
            if stable >= 8:
                return

    async def _run_until(self, target_ns: int, *, jump: bool = True) -> None:
        """Virtual time: wake sleepers in deadline order up to ``target_ns``, then jump there.

        Nodes sleeping on the clock (provider latency, recorded playback times) wake
        exactly at their deadlines, interleaved with ingress by time, never early.
        """
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            return
        for _ in range(1_000_000):
            if self._runnable():
                await self._quiesce()
            deadline = clock.next_deadline_ns()
            if deadline is None or deadline > target_ns:
                break
            clock.advance_ns(max(0, deadline - clock.monotonic_ns()))
        if jump and target_ns > clock.monotonic_ns():
            clock.advance_ns(target_ns - clock.monotonic_ns())
        if self._runnable():
            await self._quiesce()

    def ingress(self, ev: Event, port: str) -> bool:
        """Push one ingress event (non-blocking) and record it with its payload."""
        # before the push: inline nodes may annotate the event
        encoded = compared_payload(ev) if self.sink is None and (
            self.keep is not None or self.keep_items is not None) else encode_event(ev)
        accepted = self.session.push(ev, port)
        edge = self._input_edges.get(port)
        if edge is None:
            edge = self._input_edges[port] = f"input.{port}"
        self._record(ev, edge, encoded=encoded)
        return accepted

    async def settle(self) -> None:
        """Wait until queues, workers and control commands are idle (at the current time)."""
        if isinstance(self.clock, VirtualClock):
            await self._quiesce()
            return
        for _ in range(3):
            await self.session.drain()

    async def stop(self, *, turn_timeout_s: float = 30.0) -> None:
        await self.settle()
        if isinstance(self.clock, VirtualClock):  # let every sleeper finish on virtual time
            await self._run_until(self.clock.monotonic_ns() + 600_000_000_000, jump=False)
        else:
            # real time: providers finish in the background; wait for open turns to end
            loop = asyncio.get_running_loop()
            deadline = loop.time() + turn_timeout_s
            while self.driver.busy and loop.time() < deadline:  # noqa: ASYNC110 (polls kernel state)
                await asyncio.sleep(0.01)
            await self.settle()
        await self.driver.aclose()
        await self.session.stop()
        self.recorder.close()
        self.flush()

    def flush(self) -> list[dict[str, object]]:
        """Move buffered records into :attr:`lines`; returns the new lines."""
        items = self.recorder.take_all()
        if not items:
            return []
        keep_items = self.keep_items
        if keep_items is not None:
            if self.sink is not None:
                for item in items:
                    self.sink(_plain_line(item))
            self.flushed += len(items)
            keep_items(items)
            return []
        sink, keep = self.sink, self.keep
        if sink is None and keep is not None:
            new = [_compared_line(item) for item in items]  # compared, never written
        else:
            new = [_plain_line(item) for item in items]
        if sink is not None:
            for line in new:
                sink(line)
        self.flushed += len(new)
        if keep is not None:
            for line in new:
                keep(line)
            return new
        self.lines.extend(new)
        return new


def _plain_line(item: BufferedItem) -> dict[str, object]:
    """A msgpack round trip: plain lists/dicts/bytes, exactly as a timeline file reads back
    (the structs are encoded as they are: what ``to_line`` gives without a redactor)."""
    return _PLAIN.decode(_PACK.encode(
        {"kind": item.kind, "record": item.record} if item.payload is None
        else {"kind": item.kind, "record": item.record, "payload": item.payload}))


#: kinds whose records the comparator reads field by field (scalars): plans and OR-02
#: evidence are compared whole, so their tuples must be the lists a file holds
_FIELDWISE = frozenset({"event_record", "control_signal", "decision_outcome", "turn_transition"})
_builtins = msgspec.to_builtins
_KEEP = (bytes,)


def compared_line_of(item: BufferedItem) -> dict[str, Any]:
    """The line a streamed comparison reads of ``item`` (see :func:`_compared_line`)."""
    return _compared_line(item)


def _compared_line(item: BufferedItem) -> dict[str, object]:
    """The line a streamed comparison reads: a plain dict, without the msgpack round trip
    where the comparator reads only scalar fields (tuples may stay tuples there)."""
    kind = item.kind
    if kind not in _FIELDWISE:
        return _plain_line(item)
    payload = item.payload
    if payload is None:
        return {"kind": kind, "record": _builtins(item.record, builtin_types=_KEEP)}
    return {"kind": kind, "record": _builtins(item.record, builtin_types=_KEEP),
            "payload": _builtins(payload, builtin_types=_KEEP)}


class _PinnedClock:
    """The session clock with ``wall_ms`` pinned to a recorded value while a plan freezes."""

    def __init__(self, inner: VirtualClock | SystemClock) -> None:
        self.inner = inner
        self.pinned: int | None = None

    def monotonic_ns(self) -> int:
        return self.inner.monotonic_ns()

    def wall_ms(self) -> int:
        return self.pinned if self.pinned is not None else self.inner.wall_ms()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _PinnedWallResolver(PlanResolver):
    """Substitutes each turn's recorded turn-start wall clock (captured nondeterministic input)."""

    def __init__(self, *args: Any, walls: dict[str, int], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pinned_clock = _PinnedClock(self.clock)  # type: ignore[arg-type]
        self.clock = self.pinned_clock
        self.walls = walls

    def materialise(self, bundle: TurnStartBundle, *, session_id: str, turn_id: str,
                    authority_epoch: int, start_sequence: int = 0) -> PlanResolution:
        self.pinned_clock.pinned = self.walls.get(turn_id)
        try:
            return super().materialise(bundle, session_id=session_id, turn_id=turn_id,
                                       authority_epoch=authority_epoch,
                                       start_sequence=start_sequence)
        finally:
            self.pinned_clock.pinned = None
