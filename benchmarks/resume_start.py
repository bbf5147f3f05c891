"""The control plane's cost of a resumed session start: one call versus separate calls.

A control plane on PostgreSQL (``rspp cp serve``, fresh database, a child process).
N sessions are routed to runtime ``rt-a``; each saves a checkpoint (a conversation of
a few turns, as the runtime's checkpointer writes it) and is migrated to runtime
``rt-b`` (lease epoch 2, the migration markers). ``rt-b`` then resumes every session
with the runtime's own start code (:class:`rspp.server.GovernedSessions`' control-plane
reads: record check, lease, checkpoint take-over, signals, turn-start bundle), a few at
a time as after a failover: half through ``POST /v1/sessions/{id}/start`` (one
request, one transaction) and half through the separate requests a control plane
without that route gets, phase after phase.

Reported per resumed start and path: the control plane process's CPU time (user +
system from /proc: what the machine's load does not distort), its PostgreSQL
transactions (``pg_stat_database``, read after the statistics flushed; the idle
background over the same wait is reported apart), the runtime's HTTP requests, and
the wall time p50/p99 (loaded machine: with the load average).

Usage: ``python benchmarks/resume_start.py [--quick] [--sessions N] [--concurrency C]``.
The last line printed is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser
from _fleet import (
    KEY,
    PG_URL,
    PIPELINE,
    RSPP,
    SPEC,
    _plain,
    create_database,
    drop_database,
    free_port,
)

from rspp.controlplane import ControlPlaneClient, SessionClaims
from rspp.server._cplink import ControlPlaneLink, LinkOptions
from rspp.server._lease import ControlPlaneSnapshots, LeaseKeeper
from rspp.server._metrics import ServerMetrics
from rspp.server._sessions import GovernedSessions
from rspp.server._state import ControlPlaneStateStore
from rspp.turns import StateManager

TENANT = "acme"
TTL_MS = 30_000
#: the checkpoint of a session a few turns into a conversation
HISTORY = [{"role": r, "content": f"turn {i}: " + "words " * 30}
           for i in range(6) for r in ("user", "assistant")]


class Counting(httpx.AsyncHTTPTransport):
    """The runtime's HTTP requests, counted."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return await super().handle_async_request(request)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def xacts(db_url: str) -> int:
    """Transactions committed or rolled back in the benchmark's database (asked from
    another database, so the question is not counted)."""
    import asyncpg

    name = db_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_plain(PG_URL))
    try:
        return int(await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            name))
    finally:
        await conn.close()


async def settled_xacts(db_url: str) -> int:
    """The count once every backend flushed its statistics (idle backends flush after
    10 s; the count must also stay put)."""
    await asyncio.sleep(11)
    last = await xacts(db_url)
    while True:
        await asyncio.sleep(2)
        now = await xacts(db_url)
        if now == last:
            return now
        last = now


async def start_cp(db_url: str, work: Path) -> tuple[asyncio.subprocess.Process, str]:
    log = (work / "cp.log").open("wb")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *RSPP, "cp", "serve", "--db", db_url, "--port", str(port), "--admin-key", KEY,
        "--heartbeat-timeout-ms", "3600000", "--failover-interval-ms", "3600000",
        "--lease-ttl-ms", str(TTL_MS), stdout=log, stderr=log)
    for _ in range(1200):
        text = (work / "cp.log").read_text(errors="replace")
        if "rspp control plane on " in text:
            return proc, f"http://127.0.0.1:{port}"
        if proc.returncode is not None:
            raise RuntimeError(text)
        await asyncio.sleep(0.05)
    raise TimeoutError((work / "cp.log").read_text(errors="replace"))


async def prepare(client: ControlPlaneClient, sessions: int) -> list[str]:
    """Sessions routed to rt-a, each with a checkpoint, then migrated to rt-b."""
    await client.publish(SPEC.read_text(), SPEC.name)
    await client.register_runtime("rt-a", "ws://127.0.0.1:9/a", capacity=100_000)
    await client.heartbeat("rt-a", health="healthy", load=0)
    ids = []
    for _ in range(sessions):
        route = await client.route(TENANT, PIPELINE)
        sid = route["session_id"]
        await client.request("PUT", f"/v1/sessions/{sid}/state", json={
            "runtime_id": "rt-a", "lease_epoch": route["lease_epoch"], "expected_version": 0,
            "document": {"schema": "rspp.session_state/v1",
                         "hot": {"llm": {"history": HISTORY}}, "durable": {},
                         "session": {"runtime_id": "rt-a", "turn_seq": 6}}})
        ids.append(sid)
    await client.register_runtime("rt-b", "ws://127.0.0.1:9/b", capacity=100_000)
    await client.heartbeat("rt-b", health="healthy", load=0)
    for sid in ids:
        await client.migrate(sid, "rt-b")
    return ids


async def resume(runtime: GovernedSessions, claims: SessionClaims, in_one: bool) -> float:
    """rt-b's control-plane reads of one resumed start, as ``rspp serve`` makes them."""
    link = runtime.link
    sid = claims.session_id
    started = time.monotonic()
    keeper = LeaseKeeper(link.client, sid, link.runtime_id, ttl_ms=TTL_MS,
                         on_change=lambda *_: None, renewer=link.renewer)
    store = ControlPlaneStateStore(link.client, link.runtime_id,
                                   lambda: keeper.epoch or claims.lease_epoch, link.states)
    state = StateManager(sid, store)
    snapshots = ControlPlaneSnapshots(link.client, link.bundles)
    link.bundles.track(claims.tenant_id, sid, claims.pipeline_name)
    if in_one:
        reads = await runtime._reads_in_one(claims, keeper, store, state, snapshots, started)
    else:
        reads = await runtime._reads_in_calls(claims, keeper, state, snapshots)
    if reads is None or reads.point is None or reads.epoch != 2 or not reads.signals:
        raise RuntimeError(f"{sid} did not resume: {reads}")
    link.bundles.forget(sid)
    return time.monotonic() - started


async def phase(runtime: GovernedSessions, client: ControlPlaneClient, counter: Counting,
                ids: list[str], *, in_one: bool, concurrency: int, pid: int,
                db_url: str) -> dict[str, Any]:
    claims = []  # the clients' tokens (not part of the runtime's start)
    for sid in ids:
        token = (await client.request("POST", f"/v1/sessions/{sid}/token",
                                      json={"tenant_id": TENANT}))["token"]
        claims.append(runtime.link.verify(token, sid))
    base_x = await settled_xacts(db_url)
    idle_x = await settled_xacts(db_url) - base_x  # the background over one settle wait
    cpu0, req0 = cpu_s(pid), counter.requests
    base_x += idle_x
    walls: list[float] = []
    for i in range(0, len(claims), concurrency):
        walls += await asyncio.gather(*(resume(runtime, c, in_one)
                                        for c in claims[i:i + concurrency]))
    cpu = cpu_s(pid) - cpu0
    requests = counter.requests - req0
    total_x = await settled_xacts(db_url) - base_x
    n = len(ids)
    return {"resumes": n, "cp_cpu_ms_per_resume": round(cpu / n * 1000, 2),
            "cp_transactions_per_resume": round(total_x / n, 2),
            "idle_transactions_per_settle": idle_x,
            "runtime_requests_per_resume": round(requests / n, 2),
            "wall_p50_ms": round(percentile(walls, 50) * 1000, 1),
            "wall_p99_ms": round(percentile(walls, 99) * 1000, 1)}


async def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    sessions = 40 if args.quick else args.sessions
    db = await create_database()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"rspp-resume-start-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    try:
        proc, url = await start_cp(db, work)
        async with ControlPlaneClient(url, KEY) as admin:
            ids = await prepare(admin, sessions)
            counter = Counting()
            async with ControlPlaneClient(url, KEY, transport=counter) as rt_client:
                link = ControlPlaneLink(rt_client, LinkOptions(runtime_id="rt-b",
                                                               endpoint="ws://127.0.0.1:9/b"))
                await link.connect()
                runtime = GovernedSessions(link, ServerMetrics())
                half = len(ids) // 2
                load0 = os.getloadavg()
                calls = await phase(runtime, admin, counter, ids[:half], in_one=False,
                                    concurrency=args.concurrency, pid=proc.pid, db_url=db)
                one = await phase(runtime, admin, counter, ids[half:], in_one=True,
                                  concurrency=args.concurrency, pid=proc.pid, db_url=db)
                load1 = os.getloadavg()
                await link.bundles.aclose()
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
        await drop_database(db)
    print(f"per resumed start: control plane CPU {calls['cp_cpu_ms_per_resume']} ms -> "
          f"{one['cp_cpu_ms_per_resume']} ms, transactions "
          f"{calls['cp_transactions_per_resume']} -> {one['cp_transactions_per_resume']}, "
          f"requests {calls['runtime_requests_per_resume']} -> "
          f"{one['runtime_requests_per_resume']}")
    emit({"benchmark": "resume_start", "sessions": sessions,
          "concurrency": args.concurrency, "separate_calls": calls, "one_call": one,
          "load_average_before": [round(x, 1) for x in load0],
          "load_average_after": [round(x, 1) for x in load1]})


if __name__ == "__main__":
    asyncio.run(main())
