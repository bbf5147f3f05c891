"""CPU per LLM turn with shared provider connections vs a client per session (F-105).

A runtime's sessions build their adapters through ``create_provider``; with the
runtime's :class:`rspp.providers.HttpClientPool` an OpenAI adapter gets its endpoint's
shared ``httpx`` client, without it each session builds its own. This runs ``SESSIONS``
sessions' lifetimes (build the adapter, ``TURNS`` streamed turns, close) against the
OpenAI-compatible fake in a child process (``python -m rspp.testing.fakes``: its CPU is
not counted), both modes alternately, and reports this process's CPU time (user +
system) per turn, the median over rounds.

Usage: ``python benchmarks/shared_provider_http.py [--quick]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, quick_parser, start_fake_providers

from rspp.providers import ChatMessage, HttpClientPool, LLMRequest, create_provider

KEY = "bench-key"


async def _sessions(env: dict[str, str], pool: HttpClientPool | None, sessions: int,
                    turns: int) -> int:
    """Every session's lifetime, the sessions concurrent; the turns streamed."""

    async def one(i: int) -> int:
        llm = create_provider("llm", {"type": "openai"}, env=env, http_pool=pool)
        got = 0
        try:
            for t in range(turns):
                request = LLMRequest(messages=(ChatMessage("user", f"s{i} turn {t}"),))
                async for delta in llm.stream(request):
                    got += len(delta)
        finally:
            await llm.aclose()
        return got

    counts = await asyncio.gather(*(one(i) for i in range(sessions)))
    return sum(counts)


async def _round(env: dict[str, str], mode: str, sessions: int, turns: int) -> float:
    pool = HttpClientPool() if mode == "shared" else None
    before = cpu_seconds()
    await _sessions(env, pool, sessions, turns)
    if pool is not None:
        await pool.aclose()
    return (cpu_seconds() - before) / (sessions * turns)


def main() -> None:
    args = quick_parser(__doc__).parse_args()
    sessions, turns, rounds = (4, 5, 3) if args.quick else (8, 10, 7)
    proc, env = start_fake_providers()
    os.environ.update(env)
    try:
        per_turn: dict[str, list[float]] = {"own": [], "shared": []}
        asyncio.run(_round(env, "own", 1, 1))  # warm up imports and the fake
        for r in range(rounds):
            for mode in (("own", "shared") if r % 2 == 0 else ("shared", "own")):
                per_turn[mode].append(asyncio.run(_round(env, mode, sessions, turns)))
    finally:
        proc.terminate()
        proc.wait()
    own = statistics.median(per_turn["own"]) * 1e6
    shared = statistics.median(per_turn["shared"]) * 1e6
    for mode, values in per_turn.items():
        print(f"{mode:>6}: CPU per turn (µs) " + ", ".join(f"{v * 1e6:.0f}" for v in values))
    emit({"benchmark": "shared_provider_http", "sessions": sessions, "turns": turns,
          "rounds": rounds, "cpu_us_per_turn_own": round(own, 1),
          "cpu_us_per_turn_shared": round(shared, 1),
          "change_pct": round((shared - own) / own * 100, 1)})


if __name__ == "__main__":
    main()
