"""Requests per call, added latency and CPU per call of dynamic provider batching (F-051).

``SESSIONS`` concurrent sessions each take ``TURNS`` LLM turns in a closed loop (a turn
starts when the previous reply ended) through the ``openai-completions`` adapter
(``create_provider``, one adapter per session, the runtime's shared HTTP pool), against
the OpenAI-compatible fake in a child process (``python -m rspp.testing.fakes``: its CPU
is not counted). Two modes, alternating over rounds:

- ``off``: no ``batching``: one request per call;
- ``on``: ``batching: {max_batch_size: SESSIONS, max_wait_ms: --max-wait-ms}`` with one
  runtime :class:`~rspp.providers.ProviderBatcher` shared by the sessions.

Per mode: HTTP requests per call (counted on the client by an httpx request hook), the
time from a call's start to its first text piece (p50/p95, event-loop clock: in ``on`` it
includes the wait in the batcher), the batcher's own mean wait per call, and this
process's CPU time (user + system) per call, the median over rounds. The fake answers a
batch of N in one streamed response at the pace of one (as a server batching on an
accelerator does); what batching saves there is the server's work, which this
benchmark does not model: it measures what batching costs and saves on the runtime side.

Usage: ``python benchmarks/provider_batching.py [--quick] [--sessions N] [--turns T]
[--max-wait-ms M]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, emit, percentile, quick_parser, start_fake_providers

from rspp.providers import (
    ChatMessage,
    HttpClientPool,
    LLMRequest,
    ProviderBatcher,
    create_provider,
)


async def _round(env: dict[str, str], batching: dict[str, Any] | None, sessions: int,
                 turns: int) -> dict[str, Any]:
    requests = 0

    async def count(_request: httpx.Request) -> None:
        nonlocal requests
        requests += 1

    client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0),
                               event_hooks={"request": [count]},
                               limits=httpx.Limits(max_connections=64))
    pool, batcher = HttpClientPool(), ProviderBatcher()
    first_piece_ms: list[float] = []
    loop = asyncio.get_running_loop()

    async def session(i: int) -> None:
        config: dict[str, object] = {"type": "openai-completions", "model": "fake",
                                     "client": client}
        if batching is not None:
            config["batching"] = batching
        llm = create_provider("llm", config, env=env, http_pool=pool, batcher=batcher)
        try:
            for t in range(turns):
                request = LLMRequest(messages=(ChatMessage("user", f"s{i} turn {t}"),))
                start, first = loop.time(), None
                async for _piece in llm.stream(request):
                    if first is None:
                        first = loop.time()
                first_piece_ms.append(((first or loop.time()) - start) * 1000)
        finally:
            await llm.aclose()

    before = cpu_seconds()
    await asyncio.gather(*(session(i) for i in range(sessions)))
    cpu = cpu_seconds() - before
    await batcher.aclose()
    await pool.aclose()
    await client.aclose()
    calls = sessions * turns
    waits = batcher.stats.waits.get("openai-completions")
    return {"requests_per_call": requests / calls, "cpu_us_per_call": cpu / calls * 1e6,
            "first_piece_p50_ms": percentile(first_piece_ms, 50),
            "first_piece_p95_ms": percentile(first_piece_ms, 95),
            "batcher_wait_mean_ms": (waits.total / waits.count) if waits else 0.0}


def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--sessions", type=int, default=None)
    parser.add_argument("--turns", type=int, default=None)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    sessions = args.sessions or (8 if args.quick else 16)
    turns = args.turns or (5 if args.quick else 20)
    rounds = 3 if args.quick else 5
    batching = {"max_batch_size": sessions, "max_wait_ms": args.max_wait_ms}
    proc, env = start_fake_providers()
    os.environ.update(env)
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    try:
        asyncio.run(_round(env, None, 1, 1))  # warm up imports and the fake
        for r in range(rounds):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                results[mode].append(asyncio.run(_round(
                    env, batching if mode == "on" else None, sessions, turns)))
    finally:
        proc.terminate()
        proc.wait()
    out: dict[str, Any] = {"benchmark": "provider_batching", "sessions": sessions,
                           "turns": turns, "rounds": rounds,
                           "max_wait_ms": args.max_wait_ms}
    for mode, rows in results.items():
        for name in rows[0]:
            value = statistics.median(row[name] for row in rows)
            out[f"{name}_{mode}"] = round(value, 3)
        print(f"{mode:>3}: " + ", ".join(f"{k}={statistics.median(r[k] for r in rows):.2f}"
                                        for k in rows[0]))
    out["added_first_piece_p50_ms"] = round(
        out["first_piece_p50_ms_on"] - out["first_piece_p50_ms_off"], 3)
    out["added_first_piece_p95_ms"] = round(
        out["first_piece_p95_ms_on"] - out["first_piece_p95_ms_off"], 3)
    out["cpu_change_pct"] = round(
        (out["cpu_us_per_call_on"] - out["cpu_us_per_call_off"])
        / out["cpu_us_per_call_off"] * 100, 1)
    emit(out)


if __name__ == "__main__":
    main()
