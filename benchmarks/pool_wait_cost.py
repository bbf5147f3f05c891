"""CPU cost of timing pool waits per tenant (NF-033): ExecutionPool vs TimedPool.

``rspp serve --pool-fairness tenant`` times every acquire of a limited pool key into
the fairness SLO's book (:class:`rspp.server._fairness.TimedPool`). This measures what
that adds per acquire/release, in µs of this process's CPU time (user + system), for
two cases on one event loop:

- ``uncontended``: one task acquires and releases a free slot N times;
- ``contended``: 8 tasks of 2 tenants share a slot of limit 1, each acquiring N/8 times
  (every acquire but the first waits and is handed the slot round-robin).

Each case runs both pools alternately ``ROUNDS`` times; the best round is reported.
Target: the timed pool adds <= 5 µs an acquire.

Usage: ``python benchmarks/pool_wait_cost.py [--quick]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, quick_parser
from prometheus_client import CollectorRegistry

from rspp.kernel import ExecutionPool
from rspp.server._fairness import FairnessBook, FairnessSlo, TimedPool

ROUNDS = 5


def _pools() -> dict[str, ExecutionPool]:
    book = FairnessBook(FairnessSlo(max_wait_ms=1000), CollectorRegistry())
    return {"plain": ExecutionPool({"llm": 1}), "timed": TimedPool({"llm": 1}, book)}


async def _uncontended(pool: ExecutionPool, n: int) -> None:
    for _ in range(n):
        await pool.acquire("llm", "acme")
        pool.release("llm")


async def _contended(pool: ExecutionPool, n: int) -> None:
    async def worker(tenant: str) -> None:
        for _ in range(n // 8):
            await pool.acquire("llm", tenant)
            await asyncio.sleep(0)  # hold the slot across a loop turn: the others queue
            pool.release("llm")

    async with asyncio.TaskGroup() as tg:
        for k in range(8):
            tg.create_task(worker("acme" if k % 2 else "globex"))


def _us_per_acquire(case: str, pool: ExecutionPool, n: int) -> float:
    run = _uncontended if case == "uncontended" else _contended
    start = cpu_seconds()
    asyncio.run(run(pool, n))
    return (cpu_seconds() - start) / n * 1e6


def main() -> None:
    args = quick_parser(__doc__).parse_args()
    n = 20_000 if args.quick else 200_000
    result: dict[str, object] = {"benchmark": "pool_wait_cost", "acquires": n,
                                 "rounds": ROUNDS}
    added = 0.0
    for case in ("uncontended", "contended"):
        best = {"plain": float("inf"), "timed": float("inf")}
        for _ in range(ROUNDS):
            for name, pool in _pools().items():
                best[name] = min(best[name], _us_per_acquire(case, pool, n))
        added = max(added, best["timed"] - best["plain"])
        result[case] = {"plain_us": round(best["plain"], 3), "timed_us": round(best["timed"], 3),
                        "added_us": round(best["timed"] - best["plain"], 3)}
        print(f"{case}: plain {best['plain']:.2f} us, timed {best['timed']:.2f} us an acquire",
              file=sys.stderr)
    result["target_met"] = added <= 5.0
    emit(result)


if __name__ == "__main__":
    main()
