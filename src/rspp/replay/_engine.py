"""The replay engine (OR-03): re-run a recorded session and classify the differences.

A :class:`ReplayEngine` rebuilds the recorded session on a :class:`SessionRig`
(the same kernel session, turn driver and recorder wiring a live session uses)
over the graph to test - the recorded one, or another spec version (F-072) -
and feeds the recorded ingress events in ``runtime_sequence`` order at their
recorded virtual times. Determinism comes from the recording: the same session
id (plan seeds derive from session and turn ids), authority epoch, snapshot
references and wall-clock origin (the plan captures turn-start wall time), and
a virtual clock driven by the recorded timestamps.

Modes (F-151), chosen explicitly:

* ``re_simulate_nodes`` - every node runs again, providers included;
* ``playback_recorded_provider_outputs`` - provider nodes (``stt``/``llm``/``tts``
  by default) call no provider: their recorded outputs are served on the same
  ports for the same input ordinals; all other nodes run again.

Decision modes: ``replay_decisions`` takes the recorded per-turn admission
decisions; ``recompute_decisions`` asks local admission again. Every event
record of the candidate timeline carries ``scope = "replay:<mode>:<decision mode>"``
and the result/report name both modes.

Determinism tolerances (NF-009): ORDERING, PLAN, OUTCOME (terminals, decisions,
final output text per turn and node), AUTHORITY and PROVIDER_CHOICE must match
exactly; timestamps may move by ``tolerances.timing_ms`` (default 50 ms) before
a TIMING finding is reported, and TIMING fails a replay only through
``policy.max_timing_findings`` (the latency-regression gate). Virtual time
keeps the recorded order inside a millisecond (records are placed by their
recorded ``runtime_sequence``); a recorded turn-start wall clock is substituted
when the plan is frozen, so plan hashes reproduce.

Providers that work in threads or over the network (the offline STT/TTS) can
only be re-simulated in real time (``real_time=True``): terminals, final
transcripts and replies reproduce, but the number of partial transcripts (and
with it the plan's ``runtime_sequence_from`` marker), the order of outputs
relative to ingress inside scheduling jitter and the timestamps are then only
as stable as the machine.

The candidate timeline is compared with the recording by
:func:`~rspp.observability.compare_timelines` into a
:class:`~rspp.contracts.DivergenceReport`. Stepping, pausing and resuming go
through :class:`~rspp.replay.ReplayCursor` (F-152).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rspp.contracts import (
    DivergencePolicy,
    DivergenceReport,
    RecordingLevel,
    ReplayMode,
    ReplayTolerances,
)
from rspp.kernel import Event, NodeRegistry
from rspp.observability._compare import TurnwiseComparison, compare_timelines
from rspp.observability._timeline_io import TimelineLine, is_msgpack
from rspp.replay._compare_process import CompareProcess, PipedComparison
from rspp.replay._cursor import ReplayCursor, recording_digest
from rspp.replay._errors import ReplayError
from rspp.replay._flushes import recorded_flushes
from rspp.replay._paired import PairedComparison
from rspp.replay._rig import (
    DEFAULT_PROVIDER_NODE_TYPES,
    RigOptions,
    SessionRig,
)
from rspp.replay._session_factory import SessionFactory
from rspp.replay._source import IngressIndex, IngressItem, Recording, load_recording
from rspp.replay._transport import RecordedTransport, play_late_arrivals, play_transport
from rspp.spec import GraphDefinition
from rspp.turns._admission import AdmissionDecision, LocalAdmission
from rspp.turns._late_events import recorded_arrivals

__all__ = ["RecordedAdmission", "ReplayEngine", "ReplayOptions", "ReplayResult", "replay"]

_MODES = (ReplayMode.RE_SIMULATE_NODES, ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS)
_DECISIONS = (ReplayMode.REPLAY_DECISIONS, ReplayMode.RECOMPUTE_DECISIONS)


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """Mode, decision mode, provider node types, tolerances and failing policy."""

    mode: ReplayMode = ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS
    decision_mode: ReplayMode = ReplayMode.REPLAY_DECISIONS
    provider_node_types: frozenset[str] = DEFAULT_PROVIDER_NODE_TYPES
    tolerances: ReplayTolerances = field(default_factory=ReplayTolerances)
    policy: DivergencePolicy = field(default_factory=DivergencePolicy)
    tenant_id: str = "local"
    runtime_id: str = "replay-rig"
    #: pace the replay in real time on the system clock (re-simulating providers that
    #: work in threads or over the network); virtual time otherwise
    real_time: bool = False
    #: a streamed replay (the CLI): the candidate timeline keeps only what the comparator
    #: reads (:func:`~rspp.observability.compare_view`); whole lines go to ``line_sink``
    lean: bool = False
    line_sink: Callable[[dict[str, object]], None] | None = None
    #: a streamed replay of a file compares in this second process (the same report)
    compare_process: CompareProcess | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ReplayError(f"mode={self.mode.value!r}: use one of {[m.value for m in _MODES]}")
        if self.decision_mode not in _DECISIONS:
            raise ReplayError(f"decision_mode={self.decision_mode.value!r}: use one of "
                              f"{[m.value for m in _DECISIONS]}")


class RecordedAdmission:
    """Replay-decisions admission: the recorded per-turn decision, else local admission."""

    def __init__(self, recording: Recording, fallback: LocalAdmission) -> None:
        self.recording = recording
        self.fallback = fallback
        self.replayed: list[str] = []
        self.recomputed: list[str] = []

    def admit_turn(self, tenant_id: str, session_id: str, turn_id: str) -> AdmissionDecision:
        recorded = self.recording.decisions.get(turn_id)
        if recorded is None:
            self.recomputed.append(turn_id)
            return self.fallback.admit_turn(tenant_id, session_id, turn_id)
        self.replayed.append(turn_id)
        return AdmissionDecision(outcome=recorded)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The candidate timeline, its divergence report and how it was produced."""

    report: DivergenceReport
    lines: list[dict[str, object]]
    mode: ReplayMode
    decision_mode: ReplayMode
    cursor: ReplayCursor
    provider_outputs_served: int
    decisions_replayed: tuple[str, ...]
    #: the recording's plan lists the replay modes its policy allows; outside them the
    #: replay still runs and says so here
    notes: tuple[str, ...] = ()
    #: candidate lines produced (a streamed replay compares them as they come and keeps
    #: none in :attr:`lines`)
    line_count: int = -1

    @property
    def candidate_lines(self) -> int:
        return self.line_count if self.line_count >= 0 else len(self.lines)

    def summary(self) -> dict[str, Any]:
        counts = {c.name: n for c, n in self.report.counts.items()}
        return {"mode": self.mode.value, "decision_mode": self.decision_mode.value,
                "passed": self.report.passed, "divergences": counts,
                "ingress_events": self.cursor.total, "candidate_lines": self.candidate_lines,
                "provider_outputs_served": self.provider_outputs_served,
                "decisions_replayed": list(self.decisions_replayed), "notes": list(self.notes)}


class ReplayEngine:
    """One replay of a recording against a graph (see the module docstring)."""

    def __init__(
        self,
        recording: Recording,
        graph: GraphDefinition,
        *,
        registry: NodeRegistry | None = None,
        options: ReplayOptions | None = None,
        session_factory: SessionFactory | None = None,
    ) -> None:
        """``registry`` and ``session_factory`` are the caller's node wiring (see
        :class:`~rspp.replay.SessionRig`); replay itself knows no node implementation."""
        self.recording = recording
        self.graph = graph
        self.options = opts = options or ReplayOptions()
        rig_opts = RigOptions(
            session_id=recording.session_id, tenant_id=opts.tenant_id,
            runtime_id=opts.runtime_id, authority_epoch=recording.authority_epoch,
            start_wall_ms=recording.start_wall_ms,
            recording_level=recording.recording_level or RecordingLevel.L2,
            provider_node_types=opts.provider_node_types, snapshot_refs=recording.snapshot_refs,
            turn_walls=tuple(sorted(recording.turn_walls.items())),
            turn_capabilities=tuple(sorted(recording.turn_capabilities.items())),
            tag=f"replay:{opts.mode.value}:{opts.decision_mode.value}", real_time=opts.real_time,
            # as the recording did; without evidence: enforced on virtual time (it replays
            # the recorded times), reported in real time (the times are this machine's)
            enforce_budgets=recording.budgets_enforced if recording.budgets_enforced is not None
            else not opts.real_time)
        playback = None
        if opts.mode is ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS:
            nodes = [n.id for n in graph.nodes if n.type.partition("@")[0]
                     in opts.provider_node_types]
            playback = recording.playback_store(nodes)
        self._admission: RecordedAdmission | None = None
        admission = None
        if opts.decision_mode is ReplayMode.REPLAY_DECISIONS:
            # the fallback is bound to the rig's clock once the rig exists (below)
            admission = _LateAdmission()
        # a live transport's playback feedback and provider invocations are recorded inputs
        self.transport = RecordedTransport.from_lines(recording.lines)
        #: recorded turn proposals by reason: (runtime_sequence, runtime_ms), in order
        self._proposals: dict[str, list[tuple[int, int]]] = {}
        for ln in recording.lines:
            rec = ln.record
            if ln.kind == "control_signal" and rec.get("signal") == "turn_open_proposed":
                self._proposals.setdefault(str(rec.get("reason")), []).append(
                    (int(rec.get("runtime_sequence") or 0),
                     int(rec.get("runtime_timestamp_ms") or 0)))
        #: recorded proposals of user input (typed text, a digit) that took no input: the
        #: live transport refused the input when its turn stayed pre-turn (F-141), so the
        #: replay proposes them at their recorded point and feeds nothing
        self._inputless = _inputless_proposals(self._proposals, recording.ingress)
        served = self.transport.invocations if playback is not None else None
        self.rig = SessionRig(graph, registry=registry, options=rig_opts,
                              admission=admission, playback=playback, invocations=served,
                              external_transport=self.transport.present,
                              session_factory=session_factory)
        self.rig.sink = opts.line_sink
        # the recorded cancellation flushes are inputs too (rspp.kernel._flushes)
        self.rig.session.recorded_flushes = recorded_flushes(recording.lines)
        # and so are the outputs of closed turns that arrived late (F-140): fed at their
        # recorded place, never derived from what the replay's nodes emit after a fence
        self.rig.driver.late.replayed = True
        self._late = recorded_arrivals(ln.record for ln in recording.lines
                                       if ln.kind == "control_signal")
        self._comparison: TurnwiseComparison | None = None
        self._piped: PipedComparison | None = None
        self._paired: PairedComparison | None = None
        self._expected: Iterator[TimelineLine] | None = None
        if opts.lean and opts.compare_process is not None and recording.fetcher is not None:
            # the comparison (and its reading of the recording) in the second process
            self._piped = opts.compare_process.session(
                recording.fetcher, tolerances=opts.tolerances, policy=opts.policy,
                mode=opts.mode)
            self.rig.keep = self._piped.add_actual
        elif opts.lean and recording.fetcher is not None and not is_msgpack(recording.source):
            # bytes first: the candidate's records against the raw lines the pass reads
            self._paired = PairedComparison(recording.fetcher, tag=rig_opts.tag,
                                            tolerances=opts.tolerances, policy=opts.policy,
                                            mode=opts.mode)
            self.rig.keep_items = self._paired.add_items
        elif opts.lean:  # compare turn by turn as the candidate lines come
            self._comparison = TurnwiseComparison(tolerances=opts.tolerances,
                                                  policy=opts.policy, mode=opts.mode)
            if recording.fetcher is not None:  # one pass feeds the replay and the comparison
                recording.fetcher.on_line = self._comparison.add_expected
            else:
                self._expected = recording.expected_lines()
            self.rig.keep = self._candidate_line
        self._transport_task: asyncio.Task[None] | None = None
        self._late_task: asyncio.Task[None] | None = None
        if isinstance(admission, _LateAdmission):
            local = LocalAdmission(self.rig.clock)
            if self.rig.bundle.admission_policy is not None:
                local.set_policy(self.rig.bundle.admission_policy)
            local.admit_session(opts.tenant_id, recording.session_id)
            self._admission = RecordedAdmission(recording, local)
            admission.target = self._admission
        self.position = 0
        self.paused = False
        self._started = False
        self._finished: ReplayResult | None = None
        self._digest = recording.ingress_digest or recording_digest(recording.session_id, [
            str(it.line.record.get("event_id")) for it in recording.ingress])

    # ---------------------------------------------------------------- cursor
    @property
    def total(self) -> int:
        return len(self.recording.ingress)

    def cursor(self) -> ReplayCursor:
        return ReplayCursor(
            recording_ref=self.recording.source, recording_digest=self._digest,
            mode=self.options.mode, decision_mode=self.options.decision_mode,
            position=self.position, total=self.total,
            runtime_sequence=self.rig.session._seq,
            runtime_ms=self.rig.timebase.runtime_ms(), lines=self.rig.flushed,
            paused=self.paused)

    async def start(self) -> ReplayCursor:
        if not self._started:
            self._started = True
            await self.rig.start()
            if self.rig.feedback is not None:
                self._transport_task = asyncio.get_running_loop().create_task(
                    play_transport(self.rig.feedback, self.transport), name="replay-transport")
            if self._late:
                self._late_task = asyncio.get_running_loop().create_task(play_late_arrivals(
                    self.rig.timebase.runtime_ns, self.rig.clock.sleep, self._late,
                    self.rig.driver.late.fed), name="replay-late-arrivals")
        return self.cursor()

    async def step(self, n: int = 1) -> ReplayCursor:
        """Feed the next ``n`` recorded ingress events and let the session settle."""
        if n < 1:
            raise ReplayError(f"step(n={n}): n must be >= 1")
        await self._feed(n)
        return self.cursor()

    async def _feed(self, n: int, *, pausable: bool = False) -> None:
        """:meth:`step` without the cursor; :meth:`run` feeds with ``pausable`` (it stops
        at the ingress boundary after :meth:`pause`)."""
        await self.start()
        if self._finished is not None:
            raise ReplayError("the replay already finished; start a new ReplayEngine")
        end = min(self.position + n, self.total)
        rig, playback, ingress = self.rig, self.rig.playback, self.recording.ingress
        source = self.recording.source
        # an IngressIndex answers from its arrays (no item made per frame)
        fields, event_at = (ingress.fields, ingress.event_at) \
            if isinstance(ingress, IngressIndex) else (_fields_of(ingress), _event_of(ingress))
        # on virtual time the loop's ready queue, held for the feed: per frame, an empty
        # queue makes SessionRig.advance_now a jump of the clock and settled_now true
        ready, clock = rig.idle_queue(), rig.virtual_clock
        while self.position < end and not (pausable and self.paused):
            i = self.position
            sequence, at_ms, port = fields(i)
            if self._inputless:  # (most recordings have none: no coroutine per frame)
                await self._propose_inputless(sequence)
            ev = event_at(i, source)
            if port == "audio":
                if ready is None or ready or clock is None or not clock.jump_if_idle(
                        at_ms * 1_000_000 + sequence % 1_000_000):
                    await rig.advance_to(at_ms, sequence)
            else:
                # user input that is not speech (typed text, a DTMF digit) opened its own
                # turn in the live transport before entering the graph: so does the replay,
                # at the recorded proposal's time
                reason = "text_input" if port == "text" else ev.kind
                proposed = self._proposal_before(reason, sequence)
                if proposed is not None:
                    await self.rig.advance_to(proposed[1], proposed[0])
                self.rig.driver.end_of_utterance(reason)
                ev.turn_id = await self.rig.driver.turn_for_utterance()
                await self.rig.advance_to(at_ms, sequence)
            rig.ingress(ev, port)
            self.position += 1
            if playback is not None:
                playback.mark_fed(self.position)
            if ready is None or ready:  # (SessionRig.settled_now; a frame usually wakes nothing)
                await rig.settle()
            rig.flush()  # the streamed comparison keeps pace with the replay
        if self.position == self.total and not (pausable and self.paused):
            await self._propose_inputless(None)

    async def _propose_inputless(self, before: int | None) -> None:
        """Replay the refused inputs' proposals recorded before sequence ``before`` (None:
        all that are left): each is proposed at its point and takes no input."""
        pending = self._inputless
        while pending and (before is None or pending[0][0] < before):
            seq, ms, reason = pending.pop(0)
            await self.rig.advance_to(ms, seq)
            self.rig.driver.end_of_utterance(reason)
            await self.rig.driver.turn_for_utterance()
            await self.rig.settle()
            self.rig.flush()

    def _proposal_before(self, reason: str, sequence: int) -> tuple[int, int] | None:
        """The last recorded ``turn_open_proposed`` of ``reason`` before ``sequence``."""
        found = self._proposals.get(reason, [])
        i = bisect.bisect_left(found, (sequence, -1))
        return found[i - 1] if i else None

    def pause(self) -> ReplayCursor:
        """Stop :meth:`run` at the next ingress boundary; returns the cursor."""
        self.paused = True
        return self.cursor()

    async def run(self, *, on_step: Callable[[ReplayCursor], object] | None = None
                  ) -> ReplayCursor:
        """Feed events until the end or until :meth:`pause` (``on_step`` may call it)."""
        self.paused = False
        await self.start()
        total = self.total
        if on_step is None:
            await self._feed(total - self.position, pausable=True)
            return self.cursor()
        while self.position < total and not self.paused:
            await self._feed(1)
            on_step(self.cursor())
        return self.cursor()

    async def resume(self, cursor: ReplayCursor) -> ReplayCursor:
        """Re-execute deterministically up to ``cursor`` and check the boundary matches."""
        if cursor.recording_digest != self._digest:
            raise ReplayError(f"cursor belongs to another recording ({cursor.recording_ref}); "
                              f"this engine replays {self.recording.source}")
        if (cursor.mode, cursor.decision_mode) != (self.options.mode, self.options.decision_mode):
            raise ReplayError(f"cursor was taken in mode {cursor.mode.value}/"
                              f"{cursor.decision_mode.value}; "
                              "create the engine with the same modes")
        if self.position > cursor.position:
            raise ReplayError(f"engine is at {self.position}, past cursor {cursor.position}")
        if cursor.position > self.position:
            await self.step(cursor.position - self.position)
        else:
            await self.start()
        now = self.cursor()
        same = (now.position, now.runtime_sequence, now.runtime_ms, now.lines) == (
            cursor.position, cursor.runtime_sequence, cursor.runtime_ms, cursor.lines)
        if not same:
            raise ReplayError(
                f"resume is not deterministic: at position {cursor.position} the cursor saved "
                f"seq={cursor.runtime_sequence} ms={cursor.runtime_ms} lines={cursor.lines}, the "
                f"replay reached seq={now.runtime_sequence} ms={now.runtime_ms} lines={now.lines}")
        self.paused = False
        return now

    async def finish(self) -> ReplayResult:
        """Run to the end (unless finished), stop the session and compare the timelines."""
        if self._finished is not None:
            return self._finished
        if self.paused:
            raise ReplayError("the replay is paused; run() or resume(cursor) before finish()")
        await self.run()
        cursor = self.cursor()
        await self._session_end()
        await self.rig.stop()
        await self._stop_transport()
        opts = self.options
        late = 0
        if self._piped is not None:
            report = self._piped.finish()
            late = self._piped.late_lines
        elif self._paired is not None:
            self._paired.fetcher.read_on(None)  # the recording to its end
            try:
                report = self._paired.finish()
            finally:
                self._paired.close()
            late = self._paired.late_lines
        elif self._comparison is not None:
            self._feed_expected(everything=True)
            report = self._comparison.finish()
            late = self._comparison.late_lines
        else:
            report = compare_timelines(self.recording.lines, self.rig.lines,
                                       tolerances=opts.tolerances, policy=opts.policy,
                                       mode=opts.mode)
        served = self.rig.playback.served if self.rig.playback is not None else 0
        replayed = tuple(self._admission.replayed) if self._admission is not None else ()
        allowed = self.recording.allowed_modes
        notes = tuple(f"{m.value} is not in the recording policy's allowed_replay_modes "
                      f"{list(allowed)}" for m in (opts.mode, opts.decision_mode)
                      if allowed and m.value not in allowed)
        if late:
            notes += (f"{late} records arrived after their turn was "
                      "compared (streamed comparison); compare the whole timelines to be exact",)
        self._finished = ReplayResult(report=report, lines=list(self.rig.lines), mode=opts.mode,
                                      decision_mode=opts.decision_mode, cursor=cursor,
                                      provider_outputs_served=served,
                                      decisions_replayed=replayed, notes=notes,
                                      line_count=self.rig.flushed)
        return self._finished

    def _streaming(self) -> TurnwiseComparison:
        comparison = self._comparison
        if comparison is None:
            raise ReplayError("the turn-by-turn comparison is used only by a streamed replay")
        return comparison

    def _candidate_line(self, line: dict[str, object]) -> None:
        comparison = self._streaming()
        # the rig's own lines (plain, as a file reads back): no envelope check; the
        # comparator reads fields by name and a payload's text only
        payload = line.get("payload")
        comparison.add_actual(TimelineLine(
            line=0, kind=str(line["kind"]), record=line["record"],  # type: ignore[arg-type]
            payload=payload if isinstance(payload, dict) and "text" in payload else None))
        if comparison.waiting_for_expected:
            self._feed_expected()

    def _feed_expected(self, *, everything: bool = False) -> None:
        """Read the recording on until it closed the turns the candidate closed (or all)."""
        comparison = self._streaming()
        fetcher = self.recording.fetcher
        if fetcher is not None:  # the replay's own pass hands the lines to the comparison
            fetcher.read_on(None if everything else lambda: not comparison.waiting_for_expected)
            return
        lines = self._expected
        if lines is None:
            raise ReplayError("the turn-by-turn comparison has no expected timeline")
        for line in lines:
            comparison.add_expected(line)
            if not everything and not comparison.waiting_for_expected:
                return

    async def _session_end(self) -> None:
        """The client left while a turn was Active (a hang-up): the recording ends that turn
        ``abort(session_end)``; the replay ends the session at the same point."""
        ends = [ln.record for ln in self.recording.lines if ln.kind == "control_signal"
                and ln.record.get("signal") == "abort"
                and ln.record.get("reason") == "session_end"]
        if not ends:
            return
        rec = ends[-1]
        await self.rig.advance_to(int(rec.get("runtime_timestamp_ms") or 0),
                                  int(rec.get("runtime_sequence") or 0))
        self.rig.driver.end_session()
        await self.rig.settle()

    async def aclose(self) -> None:
        """Stop the session without comparing (abandoning a paused replay)."""
        if self._finished is None and self._started:
            await self.rig.stop()
            await self._stop_transport()
        if self._paired is not None:
            self._paired.close()

    async def _stop_transport(self) -> None:
        late, self._late_task = self._late_task, None
        if late is not None:
            late.cancel()
            await asyncio.wait({late})
        task, self._transport_task = self._transport_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                raise ReplayError(f"replaying the recorded transport signals failed: "
                                  f"{task.exception()}")


def _fields_of(ingress: Sequence[IngressItem]) -> Callable[[int], tuple[int, int, str]]:
    """``(runtime_sequence, runtime_ms, port)`` of item ``i`` (IngressIndex.fields)."""
    def fields(i: int) -> tuple[int, int, str]:
        item = ingress[i]
        return item.runtime_sequence, item.runtime_ms, item.port
    return fields


def _event_of(ingress: Sequence[IngressItem]) -> Callable[[int, str], Event]:
    """The event of item ``i`` (IngressIndex.event_at)."""
    return lambda i, where: ingress[i].event(where)


class _LateAdmission:
    """Forwards to the admission source set after the rig (and its clock) exist."""

    target: RecordedAdmission | None = None

    def admit_turn(self, tenant_id: str, session_id: str, turn_id: str) -> AdmissionDecision:
        if self.target is None:
            raise ReplayError("replay admission used before it was bound")
        return self.target.admit_turn(tenant_id, session_id, turn_id)


async def replay(
    recording: str | Path | Iterable[object] | Recording,
    graph: GraphDefinition,
    *,
    registry: NodeRegistry | None = None,
    options: ReplayOptions | None = None,
    session_factory: SessionFactory | None = None,
) -> ReplayResult:
    """Replay ``recording`` (file, lines or :class:`Recording`) against ``graph`` to the end."""
    rec = recording if isinstance(recording, Recording) else load_recording(recording)
    engine = ReplayEngine(rec, graph, registry=registry, options=options,
                          session_factory=session_factory)
    try:
        return await engine.finish()
    finally:
        if rec is not recording:
            rec.close()


#: proposal reasons of user input that is not speech, and the entry port of that input
_INPUT_REASONS = {"text_input": "text", "dtmf": "control"}


def _inputless_proposals(proposals: dict[str, list[tuple[int, int]]],
                         ingress: Any) -> list[tuple[int, int, str]]:
    """``(sequence, ms, reason)`` of the recorded input proposals no ingress event took.

    An input's proposal is the last one of its reason before the input's ingress (what
    the replay feeds it with); an earlier one with no input of its own was refused.
    """
    if not any(proposals.get(r) for r in _INPUT_REASONS):
        return []
    inputs = (ingress.input_sequences() if hasattr(ingress, "input_sequences")
              else [(it.runtime_sequence, it.port) for it in ingress if it.port != "audio"])
    out: list[tuple[int, int, str]] = []
    for reason, port in _INPUT_REASONS.items():
        found = proposals.get(reason, [])
        taken = {found[i - 1][0] for seq, p in inputs if p == port
                 if (i := bisect.bisect_left(found, (seq, -1)))}
        out.extend((seq, ms, reason) for seq, ms in found if seq not in taken)
    return sorted(out)
