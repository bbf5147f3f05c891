"""CPU per LLM turn with shared provider connections vs a client per session (F-105).

A runtime's sessions build their adapters through ``create_provider``; with the
runtime's :class:`rspp.providers.HttpClientPool` an OpenAI adapter gets its endpoint's
shared ``httpx`` client, without it each session builds its own. This runs ``SESSIONS``
sessions' lifetimes (build the adapter, ``TURNS`` streamed turns, close) against the
OpenAI-compatible fake in a child process (``python -m rspp.testing.fakes``: its CPU is
not counted), both modes alternately, and reports this process's CPU time (user +
system) per turn, the median over rounds.

A third mode, ``adapter``, asks whether building the adapter per session still matters
once the client is shared: one adapter built once serves every session's turns. Beside
it, what one adapter costs on its own: CPU (user + system) of building and closing one
with the shared pool (``adapter_build_us``, median of blocks of 200) and the memory one
keeps while alive (``adapter_kib``, tracemalloc, 200 alive at once).

Usage: ``python benchmarks/shared_provider_http.py [--quick]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, quick_parser, start_fake_providers

from rspp.providers import ChatMessage, HttpClientPool, LLMRequest, create_provider

KEY = "bench-key"


async def _sessions(env: dict[str, str], pool: HttpClientPool | None, sessions: int,
                    turns: int, shared: Any = None) -> int:
    """Every session's lifetime, the sessions concurrent; the turns streamed
    (``shared``: one adapter for every session, else one built per session)."""

    async def one(i: int) -> int:
        llm = shared or create_provider("llm", {"type": "openai"}, env=env, http_pool=pool)
        got = 0
        try:
            for t in range(turns):
                request = LLMRequest(messages=(ChatMessage("user", f"s{i} turn {t}"),))
                async for delta in llm.stream(request):
                    got += len(delta)
        finally:
            if shared is None:
                await llm.aclose()
        return got

    counts = await asyncio.gather(*(one(i) for i in range(sessions)))
    return sum(counts)


async def _round(env: dict[str, str], mode: str, sessions: int, turns: int) -> float:
    pool = HttpClientPool() if mode != "own" else None
    before = cpu_seconds()
    shared = create_provider("llm", {"type": "openai"}, env=env, http_pool=pool) \
        if mode == "adapter" else None
    await _sessions(env, pool, sessions, turns, shared)
    if shared is not None:
        await shared.aclose()
    if pool is not None:
        await pool.aclose()
    return (cpu_seconds() - before) / (sessions * turns)


async def _adapter_cost(env: dict[str, str], blocks: int, n: int = 200) -> tuple[float, float]:
    """(CPU µs to build and close one adapter on the shared pool, KiB one keeps alive)."""
    pool = HttpClientPool()
    create_provider("llm", {"type": "openai"}, env=env, http_pool=pool)  # the pool's client
    per: list[float] = []
    for _ in range(blocks):
        before = cpu_seconds()
        for _ in range(n):
            await create_provider("llm", {"type": "openai"}, env=env, http_pool=pool).aclose()
        per.append((cpu_seconds() - before) / n * 1e6)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    alive = [create_provider("llm", {"type": "openai"}, env=env, http_pool=pool)
             for _ in range(n)]
    gc.collect()
    kib = (tracemalloc.get_traced_memory()[0] - base) / n / 1024
    tracemalloc.stop()
    for llm in alive:
        await llm.aclose()
    await pool.aclose()
    return statistics.median(per), kib


def main() -> None:
    args = quick_parser(__doc__).parse_args()
    sessions, turns, rounds = (4, 5, 3) if args.quick else (8, 10, 7)
    proc, env = start_fake_providers()
    os.environ.update(env)
    try:
        per_turn: dict[str, list[float]] = {"own": [], "shared": [], "adapter": []}
        asyncio.run(_round(env, "own", 1, 1))  # warm up imports and the fake
        modes = ("own", "shared", "adapter")
        for r in range(rounds):
            for mode in modes[r % 3:] + modes[:r % 3]:
                per_turn[mode].append(asyncio.run(_round(env, mode, sessions, turns)))
        build_us, kib = asyncio.run(_adapter_cost(env, 3 if args.quick else 7))
    finally:
        proc.terminate()
        proc.wait()
    own, shared, adapter = (statistics.median(per_turn[m]) * 1e6 for m in modes)
    for mode, values in per_turn.items():
        print(f"{mode:>7}: CPU per turn (µs) " + ", ".join(f"{v * 1e6:.0f}" for v in values))
    emit({"benchmark": "shared_provider_http", "sessions": sessions, "turns": turns,
          "rounds": rounds, "cpu_us_per_turn_own": round(own, 1),
          "cpu_us_per_turn_shared": round(shared, 1),
          "change_pct": round((shared - own) / own * 100, 1),
          "cpu_us_per_turn_shared_adapter": round(adapter, 1),
          "shared_adapter_change_pct": round((adapter - shared) / shared * 100, 1),
          "adapter_build_us": round(build_us, 1), "adapter_kib": round(kib, 2),
          "load_average": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
