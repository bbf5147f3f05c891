"""Kernel II end to end on a real event loop and a real loopback TCP transport.

A turn is admitted (LocalAdmission), authorised (AuthorityGuard), planned
(PlanResolver over the compiled example graph and in-process snapshots) and
opened (TurnArbiter); a TTS task streams PCM chunks through a bounded egress
queue to a real TCP receiver. A barge-in cancels the turn: no chunk of the
cancelled scope reaches the socket after the fence, and the next utterance
opens a new turn (F-025, F-033, F-175, F-039). A lease rotation mid-turn gives
deauthorized_drain, abort(authority_loss), close and zero accepted stale
outputs (F-156, NF-027). Every record validates against the reference schema.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import (
    AbiCompatibility,
    AdmissionPolicy,
    CancelScopeKind,
    ControlSignal,
    DecisionOutcome,
    PolicyResolution,
    ProviderHealth,
    ResolvedTurnPlan,
    RoutingView,
    SnapshotMeta,
    TurnStartBundle,
    TurnTransition,
    VersionResolution,
)
from rspp.contracts._snapshots import RuntimeHealth
from rspp.kernel._clock import SystemClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.spec import GraphDefinition, compile_spec, load_spec
from rspp.turns._admission import LocalAdmission
from rspp.turns._arbiter import LifecycleRecord, TurnArbiter
from rspp.turns._authority import AuthorityGuard
from rspp.turns._cancel import CancelReason, CancelScope, CancelScopeTree
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._snapshot_source import StaticSnapshotSource

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
HEADER = struct.Struct("!II")  # turn number, chunk sequence
CHUNK = bytes(640)
_KIND: dict[type, str] = {
    ControlSignal: "control_signal",
    DecisionOutcome: "decision_outcome",
    TurnTransition: "turn_transition",
    ResolvedTurnPlan: "resolved_turn_plan",
}


def _bundle(graph: GraphDefinition, now: int) -> TurnStartBundle:
    def meta(n: str) -> SnapshotMeta:
        return SnapshotMeta(snapshot_id=n, version=1, issued_at_ms=now, expires_at_ms=now + 600_000)

    return TurnStartBundle(
        version_resolution=VersionResolution(
            meta=meta("vr"), pipeline_name=graph.name, pipeline_version=graph.version, spec_hash="h"
        ),
        routing_view=RoutingView(meta=meta("rv"), runtime_id="rt-1", health=RuntimeHealth.HEALTHY),
        admission_policy=AdmissionPolicy(
            meta=meta("ap"),
            tenant_id="acme",
            max_concurrent_sessions=4,
            sessions_per_minute=10,
            turns_per_minute=100,
        ),
        policy_resolution=PolicyResolution(meta=meta("pr"), provider_bindings={}),
        provider_health=ProviderHealth(meta=meta("ph")),
        abi_compatibility=AbiCompatibility(
            meta=meta("abi"), schema_version="v1.0", compatible=True
        ),
    )


class Receiver:
    """A real TCP peer standing in for the client: counts chunks per turn."""

    def __init__(self) -> None:
        self.chunks: dict[int, list[int]] = {}
        self.done = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                turn, seq = HEADER.unpack(head)
                await reader.readexactly(len(CHUNK))
                self.chunks.setdefault(turn, []).append(seq)
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            self.done.set()


class Session:
    def __init__(self, graph: GraphDefinition, writer: asyncio.StreamWriter) -> None:
        self.clock = SystemClock()
        self.stamp = RecordStamp(Correlation("acme", "s1", graph.version), Timebase(self.clock))
        self.guard = AuthorityGuard(1)
        self.arbiter = TurnArbiter(self.stamp, authority_epoch=1)
        self.tree = CancelScopeTree("s1", self.clock, stamp=self.stamp)
        self.admission = LocalAdmission(self.clock)
        bundle = _bundle(graph, self.clock.wall_ms())
        assert bundle.admission_policy is not None
        self.admission.set_policy(bundle.admission_policy)
        self.resolver = PlanResolver(
            graph, StaticSnapshotSource(bundle), self.clock, runtime_id="rt-1"
        )
        self.records: list[LifecycleRecord | ResolvedTurnPlan] = []
        self.writer = writer
        self.egress: asyncio.Queue[tuple[CancelScope, int, int, int]] = asyncio.Queue(16)
        self.sent: dict[int, int] = {}
        self.sent_after_fence = 0
        self.stale_accepted = 0
        self.fenced: set[str] = set()
        self.flushed = 0

    async def open_turn(self) -> CancelScope:
        arb = self.arbiter
        self.records.extend(arb.propose(epoch=self.guard.epoch).records)
        turn_id = arb.turn_id or ""
        decision = self.admission.admit_turn("acme", "s1", turn_id)
        self.records.extend(arb.admission(decision.kind, decision.outcome.reason).records)
        self.records.extend(arb.authority(self.guard.verdict(arb.turn_epoch or 0)).records)
        res = await self.resolver.resolve(
            tenant_id="acme", session_id="s1", turn_id=turn_id, authority_epoch=self.guard.epoch
        )
        assert res.plan is not None, res.refusal
        self.records.append(res.plan)
        self.records.extend(arb.plan_materialised(res.plan.plan_hash).records)
        scope = self.tree.open(CancelScopeKind.TURN, turn_id)
        self.tree.open(CancelScopeKind.NODE, f"{turn_id}/tts", scope)
        scope.on_flush(lambda: self.flush(scope))
        return scope

    def flush(self, scope: CancelScope) -> int:
        """Drop queued egress items of a cancelled scope (F-038)."""
        keep = []
        dropped = 0
        while not self.egress.empty():
            item = self.egress.get_nowait()
            if item[0] is scope:
                dropped += 1
            else:
                keep.append(item)
        for item in keep:
            self.egress.put_nowait(item)
        self.flushed += dropped
        return dropped

    async def tts(self, scope: CancelScope, turn_no: int, epoch: int) -> None:
        seq = 0
        while True:
            scope.raise_if_cancelled()
            await self.egress.put((scope, turn_no, seq, epoch))
            seq += 1
            await asyncio.sleep(0.002)

    async def egress_writer(self) -> None:
        while True:
            scope, turn_no, seq, epoch = await self.egress.get()
            await asyncio.sleep(0.005)  # playback pace: a backlog builds in the queue
            out = self.arbiter.output(scope.scope_id, epoch)
            self.records.extend(out.records)
            if not (
                out.accepted and self.guard.admit_output(epoch) and self.tree.fence.admit(scope)
            ):
                continue
            if epoch < self.guard.epoch:
                self.stale_accepted += 1
            if scope.scope_id in self.fenced:
                self.sent_after_fence += 1
            self.writer.write(HEADER.pack(turn_no, seq) + CHUNK)
            self.tree.fence.mark_played(scope, seq + 1)
            self.sent[turn_no] = self.sent.get(turn_no, 0) + 1
            await self.writer.drain()


def _validate_all(schema: dict[str, Any], records: list[Any]) -> None:
    validators: dict[str, jsonschema.Draft202012Validator] = {}
    for rec in records:
        kind = _KIND[type(rec)]
        if kind not in validators:
            validators[kind] = jsonschema.Draft202012Validator(
                {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
            )
        validators[kind].validate(msgspec.json.decode(msgspec.json.encode(rec)))


async def _serve() -> tuple[Receiver, asyncio.Server, asyncio.StreamWriter]:
    rx = Receiver()
    server = await asyncio.start_server(rx.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return rx, server, writer


async def test_barge_in_fences_egress_and_next_turn_opens(reference_schema: dict[str, Any]) -> None:
    graph = compile_spec(load_spec(EXAMPLE))
    rx, server, writer = await _serve()
    s = Session(graph, writer)
    s.admission.admit_session("acme", "s1")
    async with asyncio.TaskGroup() as tg:
        egress = tg.create_task(s.egress_writer())
        scope1 = await s.open_turn()
        tts1 = tg.create_task(s.tts(scope1, 1, s.guard.epoch))
        scope1.children[f"{scope1.scope_id}/tts"].register_task(tts1)
        await asyncio.sleep(0.08)
        queued = s.egress.qsize()
        # barge-in: accept the cancel, fence egress, flush the queue, stop TTS
        s.records.extend(s.arbiter.cancel_accepted("barge_in").records)
        lat = s.tree.cancel(scope1, CancelReason.BARGE_IN)
        s.fenced.add(scope1.scope_id)
        s.records.append(
            s.tree.cancel_signal(
                scope1,
                CancelReason.BARGE_IN,
                authority_epoch=s.guard.epoch,
                turn_id=scope1.scope_id,
            )
        )
        committed = s.tree.fence.commit_point(scope1)
        sent_before = s.sent.get(1, 0)
        # the next utterance opens a new turn
        scope2 = await s.open_turn()
        tts2 = tg.create_task(s.tts(scope2, 2, s.guard.epoch))
        await asyncio.sleep(0.05)
        s.records.extend(s.arbiter.generation_complete().records)
        tts2.cancel()
        await asyncio.sleep(0.03)
        egress.cancel()
    writer.close()
    await rx.done.wait()
    server.close()
    await server.wait_closed()

    assert queued > 0 and tts1.cancelled()
    assert s.sent_after_fence == 0  # zero chunks of the cancelled scope after the fence
    assert len(rx.chunks[1]) == sent_before == s.sent[1]  # the wire agrees
    assert committed == sent_before > 0  # played audio stays played (commit point, F-039)
    assert s.flushed >= queued - 1  # the queued backlog was flushed, never played
    assert rx.chunks.get(2), "the new turn streams"
    lifecycle = [
        (r.signal.value, r.turn_id)
        for r in s.records
        if isinstance(r, ControlSignal)
        and r.signal.value in ("turn_open", "commit", "abort", "close")
    ]
    assert lifecycle == [
        ("turn_open", "s1:turn:1"),
        ("abort", "s1:turn:1"),
        ("close", "s1:turn:1"),
        ("turn_open", "s1:turn:2"),
        ("commit", "s1:turn:2"),
        ("close", "s1:turn:2"),
    ]
    assert lat.fence_ms >= 0
    _validate_all(reference_schema, s.records)


async def test_lease_rotation_mid_turn_drains_and_accepts_no_stale_output(
    reference_schema: dict[str, Any],
) -> None:
    graph = compile_spec(load_spec(EXAMPLE))
    rx, server, writer = await _serve()
    s = Session(graph, writer)
    s.admission.admit_session("acme", "s1")
    async with asyncio.TaskGroup() as tg:
        egress = tg.create_task(s.egress_writer())
        scope = await s.open_turn()
        tts = tg.create_task(s.tts(scope, 1, s.guard.epoch))  # outputs carry epoch 1
        await asyncio.sleep(0.05)
        s.guard.rotate(2)  # failover: the lease moved on
        step = s.arbiter.authority_revoked(2)
        s.records.extend(step.records)
        assert step.signals == ("deauthorized_drain", "abort", "close")
        await asyncio.sleep(0.05)  # the old TTS keeps producing epoch-1 chunks
        tts.cancel()
        await asyncio.sleep(0.02)
        egress.cancel()
    writer.close()
    await rx.done.wait()
    server.close()
    await server.wait_closed()
    assert s.stale_accepted == 0
    assert len(rx.chunks.get(1, [])) == s.sent.get(1, 0)
    assert s.arbiter.rejected_stale > 0  # stale outputs were seen and rejected (T12)
    _validate_all(reference_schema, s.records)
