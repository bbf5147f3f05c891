"""Turn-open decision: ``turn_open_proposed`` acceptance -> ``turn_open`` emission.

Each session runs as real asyncio tasks on the running loop with the
SystemClock: an actor task accepting proposals from the session inbox and a
media task handling 20 ms PCM frames at real time (the "active" load). Opening
a turn does the real work: arbiter T1, per-tenant turn quota (LocalAdmission),
authority check (AuthorityGuard), plan freeze (PlanResolver reading the six
snapshots through a StaticSnapshotSource, provider binding, determinism
context, SHA-256 plan hash over canonical JSON of the compiled example graph)
and T5 ``turn_open``. Loads: 1 session (idle) and 200 concurrent active
sessions.

Usage: ``python benchmarks/turn_open.py [--quick]``; the last line is JSON.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser, run_all

from rspp.contracts import (
    AbiCompatibility,
    AdmissionPolicy,
    PolicyResolution,
    ProviderHealth,
    RoutingView,
    SnapshotMeta,
    TurnStartBundle,
    VersionResolution,
)
from rspp.contracts._snapshots import RuntimeHealth
from rspp.kernel._clock import SystemClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.spec import GraphDefinition, compile_spec, load_spec
from rspp.turns._admission import LocalAdmission
from rspp.turns._arbiter import TurnArbiter
from rspp.turns._authority import AuthorityGuard
from rspp.turns._plan_resolver import PlanResolver
from rspp.turns._snapshot_source import StaticSnapshotSource

EXAMPLE = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "voice_assistant.yaml"
FRAME = bytes(640)


def bundle(graph: GraphDefinition, now_ms: int) -> TurnStartBundle:
    def meta(name: str) -> SnapshotMeta:
        return SnapshotMeta(
            snapshot_id=name, version=1, issued_at_ms=now_ms, expires_at_ms=now_ms + 3_600_000
        )

    return TurnStartBundle(
        version_resolution=VersionResolution(
            meta=meta("vr"),
            pipeline_name=graph.name,
            pipeline_version=graph.version,
            spec_hash=graph.spec_hash,
        ),
        routing_view=RoutingView(
            meta=meta("rv"), runtime_id="rt-bench", health=RuntimeHealth.HEALTHY
        ),
        admission_policy=AdmissionPolicy(
            meta=meta("ap"),
            tenant_id="bench",
            max_concurrent_sessions=1000,
            sessions_per_minute=1000,
            turns_per_minute=1_000_000,
        ),
        policy_resolution=PolicyResolution(meta=meta("pr"), provider_bindings={}),
        provider_health=ProviderHealth(meta=meta("ph")),
        abi_compatibility=AbiCompatibility(
            meta=meta("abi"), schema_version="v1.0", compatible=True
        ),
    )


@dataclass
class Stats:
    open_ms: list[float] = field(default_factory=list)
    inbox_to_open_ms: list[float] = field(default_factory=list)
    refused: int = 0
    frames: int = 0


class BenchSession:
    def __init__(
        self,
        sid: str,
        graph: GraphDefinition,
        source: StaticSnapshotSource,
        admission: LocalAdmission,
        clock: SystemClock,
        stats: Stats,
    ) -> None:
        self.sid = sid
        self.clock = clock
        self.stats = stats
        self.admission = admission
        self.stamp = RecordStamp(Correlation("bench", sid, graph.version), Timebase(clock))
        self.arbiter = TurnArbiter(self.stamp, authority_epoch=1)
        self.guard = AuthorityGuard(1)
        self.resolver = PlanResolver(graph, source, clock, runtime_id="rt-bench")
        self.inbox: asyncio.Queue[int] = asyncio.Queue(maxsize=16)
        self.opened = asyncio.Event()

    async def actor(self) -> None:
        arb = self.arbiter
        while True:
            sent_ns = await self.inbox.get()
            t0 = self.clock.monotonic_ns()  # turn_open_proposed accepted by the actor
            arb.propose(epoch=self.guard.epoch)
            turn_id = arb.turn_id or ""
            decision = self.admission.admit_turn("bench", self.sid, turn_id)
            arb.admission(decision.kind, decision.outcome.reason)
            arb.authority(self.guard.verdict(arb.turn_epoch or 0))
            res = await self.resolver.resolve(
                tenant_id="bench",
                session_id=self.sid,
                turn_id=turn_id,
                authority_epoch=self.guard.epoch,
                start_sequence=0,
            )
            if res.plan is None:
                self.stats.refused += 1
                self.opened.set()
                continue
            step = arb.plan_materialised(res.plan.plan_hash)
            t1 = self.clock.monotonic_ns()  # turn_open emitted
            if step.signals != ("turn_open",):
                raise RuntimeError(f"expected turn_open, got {step.signals}")
            self.stats.open_ms.append((t1 - t0) / 1e6)
            self.stats.inbox_to_open_ms.append((t1 - sent_ns) / 1e6)
            self.opened.set()

    async def media(self) -> None:
        """Active load: one 20 ms inbound frame handled every 20 ms (energy VAD-like)."""
        while True:
            await asyncio.sleep(0.020)
            energy = sum(FRAME[::64])
            self.stats.frames += 1 + energy

    async def run(self, turns: int, rng: random.Random) -> None:
        async with asyncio.TaskGroup() as tg:
            actor = tg.create_task(self.actor())
            media = tg.create_task(self.media())
            await asyncio.sleep(rng.uniform(0, 0.05))
            for _ in range(turns):
                await self.inbox.put(self.clock.monotonic_ns())
                await self.opened.wait()
                self.opened.clear()
                await asyncio.sleep(rng.uniform(0.05, 0.12))  # the turn runs
                self.arbiter.generation_complete()
                await asyncio.sleep(rng.uniform(0.01, 0.03))
            actor.cancel()
            media.cancel()


async def run_load(graph: GraphDefinition, sessions: int, turns: int, seed: int = 11) -> Stats:
    clock = SystemClock()
    stats = Stats()
    source = StaticSnapshotSource(bundle(graph, clock.wall_ms()))
    admission = LocalAdmission(clock)
    first = bundle(graph, clock.wall_ms()).admission_policy
    if first is None:
        raise RuntimeError("bundle without admission policy")
    admission.set_policy(first)
    group = []
    for i in range(sessions):
        sid = f"s{i}"
        admission.admit_session("bench", sid)
        group.append(BenchSession(sid, graph, source, admission, clock, stats))
    await run_all([s.run for s in group], turns, seed)
    return stats


def main() -> None:
    args = quick_parser(__doc__).parse_args()
    graph = compile_spec(load_spec(EXAMPLE))
    idle_turns, loaded_turns = (150, 8) if args.quick else (1000, 40)
    asyncio.run(run_load(graph, 1, 5))  # warm-up (first-use costs), not measured
    idle = asyncio.run(run_load(graph, 1, idle_turns))
    loaded = asyncio.run(run_load(graph, 200, loaded_turns))
    for name, st in (("idle (1 session)", idle), ("loaded (200 sessions)", loaded)):
        print(
            f"{name:22s} turns={len(st.open_ms):5d} refused={st.refused} "
            f"open p50={percentile(st.open_ms, 50):.3f} ms "
            f"p99={percentile(st.open_ms, 99):.3f} ms "
            f"inbox->open p99={percentile(st.inbox_to_open_ms, 99):.3f} ms"
        )
    emit(
        {
            "benchmark": "turn_open",
            "p50_ms": round(percentile(idle.open_ms, 50), 4),
            "p99_ms": round(percentile(idle.open_ms, 99), 4),
            "p99_ms_loaded": round(percentile(loaded.open_ms, 99), 4),
        }
    )


if __name__ == "__main__":
    main()
