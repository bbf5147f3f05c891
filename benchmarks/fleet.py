"""Load over several processes: a control plane, R runtimes and a client process, all real.

``rspp cp serve`` on PostgreSQL (fresh database) and R ``rspp serve --control-plane``
processes (``benchmarks/_fleet.py``); a separate client process opens N live WebSocket
sessions, each routed by the control plane, that ask typed questions answered aloud in
real time (``benchmarks/specs/text_assistant.yaml``: local responder + espeak-ng, reply
audio paced at 20 ms per frame) for a fixed time. Per point (R, N):

- per-runtime balance (sessions placed on each runtime);
- egress lateness p99: the runtimes' own measure of how late reply frames left versus
  their real-time slot (``stats.egress_lateness_p99_ms`` of every session; the p99 over
  sessions), and turns that did not complete;
- control-plane request latency p50/p99 (a prober reading ``/v1/runtimes`` every 0.2 s
  while the fleet heartbeats, renews every session's lease and reports gate samples),
  the route call latency, and the database load (transactions/s of the fleet's
  database from ``pg_stat_database``);
- CPU seconds per process kind (control plane, runtimes, client) over the run.

Capacity(R) is the largest N of the ladder with p99 lateness <= 20 ms and every turn
completed; the report compares capacity(3) with capacity(1) (the issue's target: >= 2.5x).

``--routes N``: the control plane alone (no runtime processes; three runtimes registered
and heartbeating from this process, reporting no load since no client connects) takes N
session routes of one tenant at ``--rate`` a second, then N more all at once: route
latency p50/p99, placement balance, and whether the audit chain verifies afterwards.

Usage: ``python benchmarks/fleet.py [--quick] [--ladder1 25,50,100] [--ladder3 75,150,300]
[--seconds 25] [--routes N [--rate 25]]``; ``--client`` is the client process (internal).
The last line is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser
from _fleet import (
    KEY,
    PIPELINE,
    QUESTIONS,
    Fleet,
    FleetOptions,
    create_database,
    db_rows,
    drop_database,
)

LATE_MS = 20.0


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (Linux /proc), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------- client process
async def _session(cp: str, seconds: float, rng: random.Random, out: list[dict[str, Any]],
                   http: Any) -> None:
    from rspp.client import LiveClient
    from rspp.client._route import session_url
    from rspp.transports import AudioOut, Stats, TurnEvent

    t0 = time.monotonic()
    resp = await http.post(f"{cp}/v1/sessions/route",
                           json={"tenant_id": "acme", "pipeline_name": PIPELINE})
    route_ms = (time.monotonic() - t0) * 1000
    if resp.status_code != 201:
        out.append({"error": f"route {resp.status_code}", "route_ms": route_ms})
        return
    r = resp.json()
    rec: dict[str, Any] = {"runtime": r["runtime_id"], "route_ms": route_ms, "turns": 0,
                           "failed": 0, "first_audio_ms": []}
    out.append(rec)
    try:
        client = await LiveClient.connect(session_url(r["endpoint"], r["session_id"]),
                                          token=r["token"], open_timeout=60)
    except Exception as exc:
        rec["error"] = f"connect: {exc}"
        return
    closed = asyncio.Event()
    sent_at = [0.0]
    first = [True]
    stats: list[Stats] = []

    async def read() -> None:
        async for ev in client.events():
            if isinstance(ev, Stats):
                stats.append(ev)
            elif isinstance(ev, AudioOut) and first[0]:
                first[0] = False
                rec["first_audio_ms"].append((time.monotonic() - sent_at[0]) * 1000)
            elif isinstance(ev, TurnEvent) and ev.state in ("close", "abort"):
                if ev.state == "abort":
                    rec["failed"] += 1
                closed.set()

    reader = asyncio.create_task(read())
    deadline = time.monotonic() + seconds
    await asyncio.sleep(rng.uniform(0, 2.0))  # spread the first questions
    k = rng.randrange(len(QUESTIONS))
    while time.monotonic() < deadline:
        closed.clear()
        first[0] = True
        sent_at[0] = time.monotonic()
        await client.send_text(QUESTIONS[k % len(QUESTIONS)])
        k += 1
        try:
            await asyncio.wait_for(closed.wait(), 30)
            rec["turns"] += 1
        except TimeoutError:
            rec["failed"] += 1
        await asyncio.sleep(rng.uniform(0.5, 1.5))
    if stats:
        last = stats[-1]
        rec["late_p99_ms"] = last.egress_lateness_p99_ms
        rec["late_max_ms"] = last.egress_lateness_max_ms
        rec["dropped_out"] = last.dropped_out_frames
        rec["frames_out"] = last.frames_out
    with contextlib.suppress(Exception):
        await client.close()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await reader


async def client_main(cp: str, sessions: int, seconds: float) -> None:
    import httpx

    out: list[dict[str, Any]] = []
    rng = random.Random(5)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(timeout=60, limits=limits,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        tasks = []
        for _ in range(sessions):  # ramp: ~25 new sessions a second
            tasks.append(asyncio.create_task(
                _session(cp, seconds, random.Random(rng.random()), out, http)))
            await asyncio.sleep(0.04)
        await asyncio.gather(*tasks, return_exceptions=True)
    sys.stdout.write(json.dumps(out) + "\n")


# ---------------------------------------------------------------------- one point
async def run_point(runtimes: int, sessions: int, seconds: float) -> dict[str, Any]:
    db = await create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="rspp-fleet-") as tmp:
            opts = FleetOptions(runtimes=runtimes, heartbeat_interval_s=2.0,
                                heartbeat_timeout_ms=15_000, lease_ttl_ms=6000,
                                cp_lease_ttl_ms=30_000, capacity=1000, timelines=False)
            fleet = await Fleet(Path(tmp), db, opts).start()
            try:
                return await _measure(fleet, db, sessions, seconds)
            finally:
                await fleet.stop()
    finally:
        await drop_database(db)


async def _measure(fleet: Fleet, db: str, sessions: int, seconds: float) -> dict[str, Any]:
    name = db.rsplit("/", 1)[1]
    q = f"SELECT xact_commit + xact_rollback AS tx FROM pg_stat_database WHERE datname = '{name}'"
    tx0 = (await db_rows(db, q))[0]["tx"]
    assert fleet.cp is not None
    pids = {"controlplane": [fleet.cp.popen.pid],
            "runtimes": [p.popen.pid for p in fleet.runtimes.values()]}
    cpu0 = {k: sum(_cpu_s(p) for p in v) for k, v in pids.items()}
    probe_ms: list[float] = []
    stop = asyncio.Event()

    async def prober() -> None:
        while not stop.is_set():
            t = time.monotonic()
            await fleet.http.get(f"{fleet.cp_url}/v1/runtimes")
            probe_ms.append((time.monotonic() - t) * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    probe = asyncio.create_task(prober())
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", fleet.cp_url, str(sessions), str(seconds),
        stdout=subprocess.PIPE)
    out, _ = await proc.communicate()
    wall = time.monotonic() - t0
    stop.set()
    await probe
    cpu = {k: round(sum(_cpu_s(p) for p in v) - cpu0[k], 1) for k, v in pids.items()}
    tx1 = (await db_rows(db, q))[0]["tx"]
    recs: list[dict[str, Any]] = json.loads(out.decode().strip().splitlines()[-1])
    placed: dict[str, int] = {}
    for r in recs:
        if "runtime" in r:
            placed[r["runtime"]] = placed.get(r["runtime"], 0) + 1
    lates = [r["late_p99_ms"] for r in recs if "late_p99_ms" in r]
    first = [x for r in recs for x in r.get("first_audio_ms", [])]
    turns = sum(r.get("turns", 0) for r in recs)
    failed = sum(r.get("failed", 0) for r in recs) + sum(1 for r in recs if "error" in r)
    p99 = percentile(lates, 99)
    return {
        "runtimes": len(fleet.runtimes), "sessions": sessions, "seconds": seconds,
        "placed": dict(sorted(placed.items())),
        "balance_max_over_mean": round(max(placed.values()) / (sum(placed.values())
                                                              / len(placed)), 2)
        if placed else None,
        "egress_late_p99_ms": round(p99, 1),
        "egress_late_max_ms": round(max((r.get("late_max_ms", 0) for r in recs), default=0), 1),
        "dropped_out_frames": sum(r.get("dropped_out", 0) for r in recs),
        "turns": turns, "turns_failed": failed,
        "first_audio_p50_ms": round(percentile(first, 50), 1),
        "first_audio_p99_ms": round(percentile(first, 99), 1),
        "route_p50_ms": round(percentile([r["route_ms"] for r in recs], 50), 1),
        "route_p99_ms": round(percentile([r["route_ms"] for r in recs], 99), 1),
        "cp_probe_p50_ms": round(percentile(probe_ms, 50), 1),
        "cp_probe_p99_ms": round(percentile(probe_ms, 99), 1),
        "db_tx_per_s": round((tx1 - tx0) / wall, 1),
        "cpu_s": cpu, "wall_s": round(wall, 1),
        "ok": p99 <= LATE_MS and failed == 0,
    }


# ---------------------------------------------------------------------- route bursts
async def route_burst(count: int, rate: float) -> dict[str, Any]:
    """Session routes against the control plane alone (see the module docstring)."""
    db = await create_database()
    try:
        with tempfile.TemporaryDirectory(prefix="rspp-routes-") as tmp:
            opts = FleetOptions(runtimes=0, heartbeat_timeout_ms=15_000, timelines=False)
            fleet = await Fleet(Path(tmp), db, opts).start()
            try:
                return await _bursts(fleet, count, rate)
            finally:
                await fleet.stop()
    finally:
        await drop_database(db)


async def _bursts(fleet: Fleet, count: int, rate: float) -> dict[str, Any]:
    import httpx

    cp, ids = fleet.cp_url, [f"rt-{i}" for i in range(1, 4)]
    quotas = {"max_concurrent_sessions": 100 * count, "sessions_per_minute": 100 * count}
    resp = await fleet.http.post(f"{cp}/v1/configs/admission/acme", json={"body": quotas})
    assert resp.status_code in (200, 201), resp.text
    for rid in ids:
        resp = await fleet.http.post(f"{cp}/v1/runtimes", json={
            "runtime_id": rid, "endpoint": "ws://127.0.0.1:9", "capacity": 10 * count})
        assert resp.status_code in (200, 201), resp.text
    stop = asyncio.Event()

    async def beat() -> None:  # the runtimes report no load: no client ever connects
        while not stop.is_set():
            for rid in ids:
                await fleet.http.post(f"{cp}/v1/runtimes/{rid}/heartbeat",
                                      json={"health": "healthy", "load": 0})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.3)

    beater = asyncio.create_task(beat())
    limits = httpx.Limits(max_connections=200)
    out: dict[str, Any] = {"routes": count, "rate_per_s": rate}
    async with httpx.AsyncClient(timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        async def one(lat: list[float], placed: dict[str, int]) -> None:
            t = time.monotonic()
            resp = await http.post(f"{cp}/v1/sessions/route",
                                   json={"tenant_id": "acme", "pipeline_name": PIPELINE})
            lat.append((time.monotonic() - t) * 1000)
            if resp.status_code == 201:
                rid = resp.json()["runtime_id"]
                placed[rid] = placed.get(rid, 0) + 1

        for name, gap in (("paced", 1 / rate), ("together", 0.0)):
            lat: list[float] = []
            placed: dict[str, int] = {}
            t0 = time.monotonic()
            tasks = []
            for _ in range(count):
                tasks.append(asyncio.create_task(one(lat, placed)))
                if gap:
                    await asyncio.sleep(gap)
            await asyncio.gather(*tasks)
            out[name] = {"route_p50_ms": round(percentile(lat, 50), 1),
                         "route_p99_ms": round(percentile(lat, 99), 1),
                         "failed": count - sum(placed.values()),
                         "placed": dict(sorted(placed.items())),
                         "wall_s": round(time.monotonic() - t0, 2)}
            print(f"{name}: {json.dumps(out[name])}", file=sys.stderr)
        verdict = (await http.get(f"{cp}/v1/audit/verify")).json()
    stop.set()
    await beater
    out["audit_verified"] = verdict.get("ok") is True
    out["audit_entries"] = verdict.get("checked")
    return out


async def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--client", nargs=3, metavar=("CP", "N", "SECONDS"))
    parser.add_argument("--ladder1", default="25,50,100")
    parser.add_argument("--ladder3", default="75,150,300")
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--routes", type=int, default=0,
                        help="route-burst mode: the control plane alone takes N routes")
    parser.add_argument("--rate", type=float, default=25.0)
    args = parser.parse_args()
    if args.client:
        await client_main(args.client[0], int(args.client[1]), float(args.client[2]))
        return
    if args.routes:
        load = os.getloadavg()
        result = await route_burst(args.routes, args.rate)
        emit({"benchmark": "fleet_routes", **result, "loadavg_start": round(load[0], 2),
              "cores": os.cpu_count()})
        return
    if args.quick:
        ladders, seconds = {1: [10], 3: [30]}, 12.0
    else:
        ladders = {1: [int(x) for x in args.ladder1.split(",")],
                   3: [int(x) for x in args.ladder3.split(",")]}
        seconds = args.seconds
    me = asyncio.current_task()
    assert me is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, me.cancel)  # clean up
    load = os.getloadavg()
    points = []
    capacity: dict[int, int] = {}
    for r, ladder in ladders.items():
        for n in ladder:
            point = await run_point(r, n, seconds)
            points.append(point)
            print(json.dumps(point), file=sys.stderr)
            if not point["ok"]:
                break
            capacity[r] = n
    c1, c3 = capacity.get(1, 0), capacity.get(3, 0)
    print(f"capacity: 1 runtime {c1} sessions, 3 runtimes {c3} sessions "
          f"({(c3 / c1) if c1 else 0:.2f}x); load average at start {load[0]:.1f}")
    emit({"benchmark": "fleet", "capacity_1": c1, "capacity_3": c3,
          "scale_ratio": round(c3 / c1, 2) if c1 else None, "late_threshold_ms": LATE_MS,
          "loadavg_start": round(load[0], 2), "cores": os.cpu_count(), "points": points})


if __name__ == "__main__":
    asyncio.run(main())
