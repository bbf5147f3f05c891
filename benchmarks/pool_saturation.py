"""Unaffected nodes before vs during a saturated LLM pool (``rspp serve --pool-limit``, F-109).

One ``rspp serve --pool-limit llm=1`` (embedded control plane) serves two pipelines:
``pool-chat`` (typed text -> OpenAI adapter against the fake OpenAI server -> reply text)
and ``echo-chat`` (typed text -> redaction node -> reply text: no LLM node). ``echo``
clients (closed loop: each types a line, waits for the redacted echo, types the next)
measure the echo pipeline's latency (text sent -> reply text received, the whole served
path) and throughput (echo turns per second), twice:

- ``before``: the LLM pool idle;
- ``during``: the LLM pool saturated: one ``pool-chat`` call holds the only slot (the fake
  stalls it) and ``queued`` more wait (``rspp_pool_waiting{key="llm"}`` read from
  ``/metrics`` before and after the phase: saturated throughout).

Then the held call is interrupted and every queued question must be answered.
Thresholds (the SLO of the unaffected pipeline): ``during`` p95 <= ``--max-p95-ms`` and
p95 <= before p95 x ``--max-p95-ratio`` + 20 ms; ``during`` throughput >= before x
``--min-throughput-ratio``. The JSON last line names each check and pass/fail.

Usage: ``python benchmarks/pool_saturation.py [--quick] [--clients N] [--turns T]
[--queued K]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser
from _served_load import KEY, Served, metric, provider_env

from rspp.client import LiveClient, route_session
from rspp.testing import ECHO_TEXT_SPEC
from rspp.testing.fakes import FakeProviderServers, Fault
from rspp.transports import ReplyText, TurnEvent

LLM_SPEC = """name: pool-chat
version: 1.0.0
profile: simple/v1
budgets: {turn_ms: 600000, node_ms: 600000, path_ms: 600000, edge_ms: 600000,
          provider_timeout_ms: 600000}
providers:
  llm: {primary: openai, timeout_ms: 600000, config: {retry: {max_retries: 0}}}
nodes:
  - {id: llm, type: llm}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: output.text}
"""


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_p95_ms: float = 250.0
    max_p95_ratio: float = 2.0
    min_throughput_ratio: float = 0.7


DEFAULT = Thresholds()


async def _session(url: str, pipeline: str) -> LiveClient:
    target = await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name=pipeline,
                                 timeout_s=60)
    return await LiveClient.connect(target.url, token=target.token)


async def echo_phase(url: str, clients: int, turns: int) -> dict[str, Any]:
    """``clients`` echo sessions, ``turns`` closed-loop lines each: latency and throughput."""
    conns = [await _session(url, "echo-chat") for _ in range(clients)]
    latencies: list[float] = []

    async def run(client: LiveClient, k: int) -> int:
        events = client.events()
        done = 0
        for t in range(turns):
            t0 = time.monotonic()
            await client.send_text(f"mail me at user{k}.{t}@example.com")
            async for ev in events:
                if isinstance(ev, ReplyText) and "[redacted email]" in ev.text:
                    latencies.append((time.monotonic() - t0) * 1000)
                    done += 1
                    break
        return done

    t0 = time.monotonic()
    answered = await asyncio.gather(*(run(c, k) for k, c in enumerate(conns)))
    wall = time.monotonic() - t0
    for c in conns:
        await c.close()
    return {"turns": sum(answered), "of": clients * turns,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "throughput_per_s": round(sum(answered) / wall, 1)}


async def _waiting(srv: Served, value: float) -> None:
    """Until ``rspp_pool_waiting{key="llm"}`` on the runtime's /metrics reads ``value``."""
    while metric(await srv.metrics(), "rspp_pool_waiting", key="llm") != value:  # noqa: ASYNC110
        await asyncio.sleep(0.05)  # a gauge of another process: polled


async def _answered(client: LiveClient) -> bool:
    async for ev in client.events():
        if isinstance(ev, TurnEvent) and ev.state in ("commit", "abort"):
            return ev.state == "commit"
    return False


def checks(before: dict[str, Any], during: dict[str, Any], th: Thresholds) -> dict[str, bool]:
    """Each threshold of the unaffected pipeline: met (True) or not."""
    return {
        "during_p95_ms": during["p95_ms"] <= th.max_p95_ms,
        "during_vs_before_p95": during["p95_ms"] <= before["p95_ms"] * th.max_p95_ratio + 20,
        "during_vs_before_throughput":
            during["throughput_per_s"] >= before["throughput_per_s"] * th.min_throughput_ratio,
        "all_echo_turns_answered": before["turns"] == before["of"] and
                                   during["turns"] == during["of"],
    }


async def measure(work: Path, clients: int, turns: int, queued: int,
                  thresholds: Thresholds) -> dict[str, Any]:
    """The scenario of the module docstring; the summary (the benchmark's JSON)."""
    spec = work / "pool.yaml"
    spec.write_text(LLM_SPEC)
    with FakeProviderServers(api_key="pool-key") as fakes:
        fakes.openai.faults.push(Fault("stall", seconds=3600))  # the first call holds the slot
        async with Served(spec, work, "--pool-limit", "llm=1",
                          env=provider_env(fakes.env)) as srv:
            await srv.publish(ECHO_TEXT_SPEC, "echo.yaml")
            await echo_phase(srv.url, 1, 3)  # the echo pipeline compiled and warm
            before = await echo_phase(srv.url, clients, turns)
            holder = await _session(srv.url, "pool-chat")
            await holder.send_text("question 0")
            while not fakes.openai.requests:  # noqa: ASYNC110 (the fake's thread records it)
                await asyncio.sleep(0.05)
            waiting = [await _session(srv.url, "pool-chat") for _ in range(queued)]
            for k, client in enumerate(waiting, start=1):
                await client.send_text(f"question {k}")
            await _waiting(srv, queued)
            during = await echo_phase(srv.url, clients, turns)
            still = metric(await srv.metrics(), "rspp_pool_waiting", key="llm")
            limit = metric(await srv.metrics(), "rspp_pool_limit", key="llm")
            await holder.interrupt()
            answers = await asyncio.gather(*(_answered(c) for c in waiting))
            for c in [holder, *waiting]:
                await c.close()
            await srv.stop()
    th = thresholds
    verdicts = checks(before, during, th)
    return {
        "benchmark": "pool_saturation",
        "before": before, "during": during,
        "pool": {"limit": limit, "waiting_at_start": queued, "waiting_at_end": still,
                 "queued_answered_after_release": sum(answers), "queued": queued},
        "thresholds": {"during_p95_ms": th.max_p95_ms,
                       "during_p95_vs_before": f"<= before x {th.max_p95_ratio:g} + 20 ms",
                       "during_throughput_vs_before": f">= before x {th.min_throughput_ratio:g}"},
        "checks": verdicts, "pass": all(verdicts.values()),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = quick_parser(__doc__)
    ap.add_argument("--clients", type=int, default=None, help="echo clients (20; quick 5)")
    ap.add_argument("--turns", type=int, default=None, help="echo lines per client (50; quick 20)")
    ap.add_argument("--queued", type=int, default=8, help="LLM calls queued behind the held one")
    ap.add_argument("--max-p95-ms", type=float, default=DEFAULT.max_p95_ms)
    ap.add_argument("--max-p95-ratio", type=float, default=DEFAULT.max_p95_ratio)
    ap.add_argument("--min-throughput-ratio", type=float,
                    default=DEFAULT.min_throughput_ratio)
    a = ap.parse_args()
    th = Thresholds(a.max_p95_ms, a.max_p95_ratio, a.min_throughput_ratio)
    with tempfile.TemporaryDirectory(prefix="pool-saturation-") as d:
        result = asyncio.run(measure(Path(d), a.clients or (5 if a.quick else 20),
                                     a.turns or (20 if a.quick else 50), a.queued, th))
    emit(result)


if __name__ == "__main__":
    main()
