"""Cancel fence: cancel acceptance -> egress fence applied, idle and with 200 active sessions.

Each session is a set of real asyncio tasks on the running loop with the
SystemClock: an actor task draining the session inbox (where barge-ins
arrive), a TTS producer streaming 20 ms PCM chunks at 2x real time into a
bounded egress queue (so ~9 chunks are queued when the barge-in lands, the
Pipecat scenario), and an egress writer pacing playback at real time that
checks the authority epoch and the per-scope egress fence before every
``output_accepted``. On barge-in the actor accepts the cancel (arbiter T7),
cancels the turn scope (fence, queue flush, hard cancel of the producer) and
records acceptance -> fence latency. ``chunks_after_fence`` counts chunks of a
cancelled scope the egress writer delivered after its fence was applied.

Usage: ``python benchmarks/cancel_fence.py [--quick]``; the last line is JSON.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser, run_all

from rspp.contracts import CancelScopeKind, OutcomeKind
from rspp.kernel._clock import SystemClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.turns._arbiter import TurnArbiter
from rspp.turns._authority import AuthorityGuard
from rspp.turns._cancel import CancelReason, CancelScope, CancelScopeTree

CHUNK = bytes(640)  # 20 ms of 16 kHz mono s16le
PLAY_S = 0.020  # real-time playback pace
PRODUCE_S = 0.010  # TTS produces at 2x real time
QUEUE_MAX = 32
PLAN_HASH = "0" * 64


@dataclass
class Stats:
    fence_ms: list[float] = field(default_factory=list)
    inbox_to_fence_ms: list[float] = field(default_factory=list)
    queued_at_cancel: list[int] = field(default_factory=list)
    chunks_after_fence: int = 0
    delivered: int = 0
    turns: int = 0


class BenchSession:
    """One session: arbiter + authority guard + cancel tree + egress on real tasks."""

    def __init__(self, sid: str, clock: SystemClock, stats: Stats) -> None:
        self.sid = sid
        self.clock = clock
        self.stats = stats
        self.stamp = RecordStamp(Correlation("bench", sid, "bench-1"), Timebase(clock))
        self.guard = AuthorityGuard(1)
        self.arbiter = TurnArbiter(self.stamp, authority_epoch=1)
        self.tree = CancelScopeTree(sid, clock, stamp=self.stamp)
        self.inbox: asyncio.Queue[tuple[str, int]] = asyncio.Queue(maxsize=64)
        self.egress: asyncio.Queue[tuple[CancelScope, int, bytes]] = asyncio.Queue(QUEUE_MAX)
        self.fenced_at: dict[str, int] = {}
        self.turn_scope: CancelScope | None = None
        self.cancelled = asyncio.Event()

    def open_turn(self) -> CancelScope:
        arb = self.arbiter
        arb.propose()
        arb.admission(OutcomeKind.ADMIT, "bench")
        arb.authority(self.guard.verdict(arb.turn_epoch or 0))
        arb.plan_materialised(PLAN_HASH)
        turn_id = arb.turn_id or ""
        scope = self.tree.open(CancelScopeKind.TURN, turn_id)
        self.tree.open(CancelScopeKind.NODE, f"{turn_id}/tts", scope)
        return scope

    async def produce(self, scope: CancelScope) -> None:
        seq = 0
        while True:
            scope.raise_if_cancelled()
            await self.egress.put((scope, seq, CHUNK))
            seq += 1
            await asyncio.sleep(PRODUCE_S)

    async def egress_writer(self) -> None:
        while True:
            scope, _seq, _chunk = await self.egress.get()
            await asyncio.sleep(PLAY_S)  # the transport plays the previous chunk
            if not self.guard.admit_output(1) or not self.tree.fence.admit(scope):
                continue  # fenced: never output_accepted / playback_started
            now = self.clock.monotonic_ns()
            fenced = self.fenced_at.get(scope.scope_id)
            if fenced is not None and now >= fenced:
                self.stats.chunks_after_fence += 1
            self.stats.delivered += 1

    def flush_egress(self, scope: CancelScope) -> int:
        kept: list[tuple[CancelScope, int, bytes]] = []
        dropped = 0
        while not self.egress.empty():
            item = self.egress.get_nowait()
            if item[0] is scope:
                dropped += 1
            else:
                kept.append(item)
        for item in kept:
            self.egress.put_nowait(item)
        return dropped

    async def actor(self) -> None:
        """The session actor: accepts barge-ins from the inbox."""
        while True:
            kind, sent_ns = await self.inbox.get()
            if kind != "barge_in" or self.turn_scope is None:
                continue
            scope = self.turn_scope
            queued = self.egress.qsize()
            t0 = self.clock.monotonic_ns()  # cancel acceptance
            self.arbiter.cancel_accepted("barge_in")
            self.tree.cancel(scope, CancelReason.BARGE_IN)
            self.flush_egress(scope)
            t1 = self.clock.monotonic_ns()  # fence applied, queue flushed, producer cancelled
            self.fenced_at[scope.scope_id] = t1
            self.stats.fence_ms.append((t1 - t0) / 1e6)
            self.stats.inbox_to_fence_ms.append((t1 - sent_ns) / 1e6)
            self.stats.queued_at_cancel.append(queued)
            self.turn_scope = None
            self.cancelled.set()

    async def run(self, turns: int, rng: random.Random) -> None:
        async with asyncio.TaskGroup() as tg:
            actor = tg.create_task(self.actor())
            writer = tg.create_task(self.egress_writer())
            for _ in range(turns):
                scope = self.open_turn()
                producer = tg.create_task(self.produce(scope))
                scope.children[f"{scope.scope_id}/tts"].register_task(producer)
                self.turn_scope = scope
                await asyncio.sleep(rng.uniform(0.15, 0.25))  # agent speaks, backlog builds
                await self.inbox.put(("barge_in", self.clock.monotonic_ns()))
                await self.cancelled.wait()
                self.cancelled.clear()
                await asyncio.sleep(PLAY_S * 2)  # let the writer try the fenced backlog
                self.tree.close(scope)
                self.stats.turns += 1
            actor.cancel()
            writer.cancel()


async def run_load(sessions: int, turns: int, seed: int = 7) -> Stats:
    clock = SystemClock()
    stats = Stats()
    group = [BenchSession(f"s{i}", clock, stats) for i in range(sessions)]
    await run_all([s.run for s in group], turns, seed)
    return stats


def main() -> None:
    args = quick_parser(__doc__).parse_args()
    idle_turns, loaded_turns = (80, 4) if args.quick else (600, 12)
    asyncio.run(run_load(1, 3))  # warm-up (first-use costs), not measured
    idle = asyncio.run(run_load(1, idle_turns))
    loaded = asyncio.run(run_load(200, loaded_turns))
    for name, st in (("idle (1 session)", idle), ("loaded (200 sessions)", loaded)):
        print(
            f"{name:22s} cancels={len(st.fence_ms):5d} "
            f"fence p50={percentile(st.fence_ms, 50):.4f} ms "
            f"p99={percentile(st.fence_ms, 99):.4f} ms "
            f"inbox->fence p99={percentile(st.inbox_to_fence_ms, 99):.3f} ms "
            f"queued at cancel p50={percentile([float(q) for q in st.queued_at_cancel], 50):.0f} "
            f"delivered={st.delivered} after_fence={st.chunks_after_fence}"
        )
    emit(
        {
            "benchmark": "cancel_fence",
            "p50_ms": round(percentile(idle.fence_ms, 50), 4),
            "p99_ms": round(percentile(idle.fence_ms, 99), 4),
            "p99_ms_loaded": round(percentile(loaded.fence_ms, 99), 4),
            "chunks_after_fence": idle.chunks_after_fence + loaded.chunks_after_fence,
        }
    )


if __name__ == "__main__":
    main()
