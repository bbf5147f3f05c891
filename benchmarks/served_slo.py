"""Concurrent live sessions on ``rspp serve``, gated by ``rspp slo report --spec`` (NF-001, NF-003).

Two scenarios, each a fresh ``rspp serve`` (embedded control plane, ``--timeline-dir``)
of the voice assistant (``_served_load.voice_spec``: energy VAD, Deepgram STT adapter
against the fake Deepgram server (``python -m rspp.testing.fakes``, its own process), a
deep VAD -> STT edge, local LLM, espeak-ng TTS) and N concurrent WebSocket
clients speaking espeak-ng speech in real time (staggered starts):

- ``turns`` (NF-001): each client asks its question R times, each time waiting for the
  turn to close; gated on the spec's ``slo.end_to_end_p50_ms``/``p95_ms`` (gate 7, end of
  user speech -> first reply audio) and ``turn_open_p95_ms``/``first_output_p95_ms``;
- ``barge-in`` (NF-003): each client asks, and 0.3 s after the reply's first audio frame
  speaks over it (a barge-in: the reply is cancelled and cleared), R times; gated on
  ``slo.cancel_fence_p95_ms``/``p99_ms`` (gate 3, cancel -> playback fenced).

After the clients ended, the runtime is stopped (SIGTERM: every timeline complete) and
the product's ``rspp slo report TIMELINES --spec SPEC --json`` gates the recorded
timelines; its exit status and the gates' verdicts are the result. ``runtime_cpu_s``: the
``rspp serve`` process's CPU (user+sys) over the scenario.

Usage: ``python benchmarks/served_slo.py [--quick] [--sessions N] [--rounds R]
[--scenario turns|barge-in|both]``; the JSON last line names every gate and pass/fail.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser
from _served_load import (
    Served,
    fake_providers,
    gate_summary,
    histogram_by,
    provider_env,
    slo_report,
    speech,
    talk,
    voice_spec,
)

#: the thresholds each scenario's spec configures (its own ``slo:`` block)
SLO: dict[str, dict[str, float]] = {
    "turns": {"end_to_end_p50_ms": 1500, "end_to_end_p95_ms": 2000, "turn_open_p95_ms": 120,
              "first_output_p95_ms": 1500},
    "barge-in": {"cancel_fence_p95_ms": 150, "cancel_fence_p99_ms": 300},
}
#: seconds between two clients' starts
STAGGER_S = 0.25
#: the gate each scenario is run for
GATE = {"turns": "end to end", "barge-in": "cancel fence"}


def runtime_cpu_s(pid: int) -> float:
    """User+sys CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scenario(name: str, sessions: int, rounds: int, work: Path,
                   slo: dict[str, float] | None = None) -> dict[str, Any]:
    """One scenario: serve, N clients, stop, gate; a summary dict (see the module doc)."""
    spec = work / f"{name}.yaml"
    spec.write_text(voice_spec(f"served-{name}", SLO[name] if slo is None else slo))
    question = await speech("what is the weather like today")
    interrupt = await speech("what is your name") if name == "barge-in" else None
    with fake_providers() as fakes:
        async with Served(spec, work, "--capacity", str(sessions + 10),
                          env=provider_env(fakes)) as srv:
            pid = srv.proc.pid if srv.proc else 0
            cpu0 = runtime_cpu_s(pid)
            results = await asyncio.gather(*(
                talk(srv.url, pipeline=f"served-{name}", question=question, rounds=rounds,
                     interrupt=interrupt, start_after_s=STAGGER_S * i)
                for i in range(sessions)))
            cpu = runtime_cpu_s(pid) - cpu0
            # slow cancellations attributed per node (F-040), from the runtime's /metrics
            exposition = await srv.metrics()
            status = await srv.stop()
    code, report, err = slo_report(list((work / "timelines").glob("*.jsonl")), spec)
    first = [ms for r in results for ms in r.first_audio_ms]
    gates = gate_summary(report)
    return {
        "scenario": name, "sessions": sessions, "rounds": rounds,
        "gate": GATE[name], "gate_status": gates.get(GATE[name], {}).get("status"),
        "slo_report_exit": code, "pass": code == 0,
        "gates": gates, "accepted_turns": report.get("accepted_turns"),
        "committed": sum(r.committed for r in results),
        "aborted": sum(r.aborted for r in results),
        "cleared": sum(r.cleared for r in results),
        "client_errors": [r.error for r in results if r.error],
        "client_first_audio_ms": {"p50": round(percentile(first, 50), 1),
                                  "p95": round(percentile(first, 95), 1)},
        "node_cancel_ms": histogram_by(exposition, "rspp_node_cancel_latency_seconds",
                                       "node_id"),
        "runtime_cpu_s": round(cpu, 2), "serve_exit": status,
        "slo_report_stderr": err.strip().splitlines()[-1:] if code else [],
    }


async def main(names: list[str], sessions: int, rounds: int) -> None:
    out = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"served-{name}-") as d:
            r = await scenario(name, sessions, rounds, Path(d))
        print(r, flush=True)
        out.append(r)
    emit({
        "benchmark": "served_slo",
        "gates": {f"{r['scenario']}: {g}": v["status"] for r in out for g, v in r["gates"].items()},
        "pass": all(r["pass"] for r in out),
        "scenarios": out,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    })


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", type=int, default=None, help="concurrent sessions (20; quick 3)")
    ap.add_argument("--rounds", type=int, default=None, help="questions per session (3; quick 1)")
    ap.add_argument("--scenario", choices=("turns", "barge-in", "both"), default="both")
    a = ap.parse_args()
    chosen = ["turns", "barge-in"] if a.scenario == "both" else [a.scenario]
    asyncio.run(main(chosen, a.sessions or (3 if a.quick else 20),
                     a.rounds or (1 if a.quick else 3)))
