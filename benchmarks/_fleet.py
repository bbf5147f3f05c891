"""A real fleet on this machine: ``rspp cp serve`` on PostgreSQL + N ``rspp serve --control-plane``.

Used by ``benchmarks/failover.py``, ``benchmarks/fleet.py`` and the scale-out tests
(``tests/e2e/test_scaleout.py``). Every process is the product's own command line in a
child process; the fleet gets a fresh PostgreSQL database (dropped afterwards); each
runtime writes its session timelines to its own directory. :class:`Talker` is one live
client session (a :class:`~rspp.client.FailoverClient` routed by the control plane) that
asks typed questions and records what became of every turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rspp.client import FailoverClient, OutputNote, Rerouter, SessionRefusedError
from rspp.transports import AudioOut, EpochEvent, ErrorEvent, ReplyText, Stats, TurnEvent

REPO = Path(__file__).resolve().parents[1]
SPEC = Path(__file__).resolve().parent / "specs" / "text_assistant.yaml"
PIPELINE = "text-assistant"
KEY = "fleet-admin-key-" + "x" * 8
PG_URL = os.environ.get("RSPP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]
QUESTIONS = ("what time is it", "tell me a joke", "what is your name", "what is two plus two",
             "what day is it", "help")


async def poll_until(cond: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Wait until ``cond()`` (state of other processes: nothing to await); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def create_database(base_url: str = PG_URL) -> str:
    """A fresh PostgreSQL database next to ``base_url``'s; returns its URL."""
    import asyncpg

    name = "rspp_fleet_" + secrets.token_hex(5)
    conn = await asyncpg.connect(_plain(base_url))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return _plain(base_url).rsplit("/", 1)[0] + "/" + name


async def drop_database(url: str, base_url: str = PG_URL) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(_plain(base_url))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class FleetOptions:
    runtimes: int = 3
    heartbeat_interval_s: float = 0.3
    heartbeat_timeout_ms: int = 1500
    failover_interval_ms: int = 100
    #: runtime-held session lease TTL (renewed every third)
    lease_ttl_ms: int = 1500
    #: TTL of leases the control plane issues (route, migration) until the runtime takes them
    cp_lease_ttl_ms: int = 10_000
    drain_mode: str = "migrate"
    drain_deadline_s: float = 20.0
    capacity: int = 200
    #: each runtime writes its sessions' timelines to ``<work>/timelines/<runtime>/``
    timelines: bool = True
    #: the pipeline spec the control plane serves (empty: ``specs/text_assistant.yaml``)
    spec: str = ""


@dataclass(slots=True)
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    url: str = ""
    stopped: bool = False

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    """A control plane and its runtimes as child processes (see the module docstring)."""

    def __init__(self, work: Path, db_url: str, options: FleetOptions | None = None) -> None:
        self.work = work
        self.db_url = db_url
        self.o = options or FleetOptions()
        self.cp: Proc | None = None
        self.cp_url = ""
        self.runtimes: dict[str, Proc] = {}
        self._seq = 0
        self.http = httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {KEY}"})

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.work / f"{name}.log"
        out = log.open("wb")
        base = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        proc = subprocess.Popen([*RSPP, *args], cwd=REPO, env={**base, **(env or {})},
                                stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return Proc(name, proc, log)

    async def _wait_line(self, proc: Proc, pattern: str, timeout_s: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.search(pattern, proc.text())
            if m:
                return m
            if not proc.alive:
                raise RuntimeError(f"{proc.name} exited {proc.popen.returncode}:\n{proc.text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} not ready:\n{proc.text()}")
            await asyncio.sleep(0.05)  # readiness: the banner line in its log

    async def start(self) -> Fleet:
        """The control plane, then the runtimes; a fleet that fails to start stops what it
        started (no control plane or runtime outlives a failed test or benchmark)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _start(self) -> None:
        port = free_port()
        o = self.o
        self.cp = self._spawn("cp", [
            "cp", "serve", "--db", self.db_url, "--port", str(port), "--admin-key", KEY,
            "--heartbeat-timeout-ms", str(o.heartbeat_timeout_ms),
            "--failover-interval-ms", str(o.failover_interval_ms),
            "--lease-ttl-ms", str(o.cp_lease_ttl_ms)])
        await self._wait_line(self.cp, r"rspp control plane on (http://\S+)")
        self.cp_url = f"http://127.0.0.1:{port}"
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await self.http.get(f"{self.cp_url}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        resp = await self.http.post(f"{self.cp_url}/v1/pipelines",
                                     json={"spec": o.spec or SPEC.read_text(),
                                           "filename": SPEC.name})
        assert resp.status_code in (200, 201), resp.text
        # every runtime start ends (ready or failed) before a failure is raised: none is
        # left spawning behind the stop
        started = await asyncio.gather(*(self.start_runtime() for _ in range(o.runtimes)),
                                       return_exceptions=True)
        for result in started:
            if isinstance(result, BaseException):
                raise result

    async def start_runtime(self) -> Proc:
        self._seq += 1
        rid = f"rt-{self._seq}"
        o = self.o
        args = ["serve", "--port", "0", "--control-plane", self.cp_url, "--api-key", KEY,
                "--runtime-id", rid, "--heartbeat-interval", str(o.heartbeat_interval_s),
                "--lease-ttl-ms", str(o.lease_ttl_ms), "--drain-mode", o.drain_mode,
                "--drain-deadline", str(o.drain_deadline_s), "--capacity", str(o.capacity)]
        if o.timelines:
            args += ["--timeline-dir", str(self.work / "timelines" / rid)]
        proc = self._spawn(rid, args)
        self.runtimes[rid] = proc
        m = await self._wait_line(proc, r"runtime \S+ ready on (http://\S+)")
        proc.url = m.group(1)
        for _ in range(600):
            if (await self.http.get(f"{proc.url}/readyz")).status_code == 200:
                return proc
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{rid} never became ready:\n{proc.text()}")

    def live(self) -> list[str]:
        """Runtimes running (not exited, not paused)."""
        return [r for r, p in self.runtimes.items() if p.alive and not p.stopped]

    async def terminate(self, rid: str, timeout_s: float = 120) -> int:
        """SIGTERM (drain) and wait for the exit status."""
        proc = self.runtimes[rid]
        proc.send(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(None, proc.popen.wait), timeout_s)

    async def stop(self) -> None:
        for proc in [*self.runtimes.values(), *( [self.cp] if self.cp else [])]:
            if proc.stopped:
                proc.send(signal.SIGCONT)
            if proc.alive:
                proc.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
        await self.http.aclose()

    # ------------------------------------------------------------------ control plane
    async def route(self, tenant: str = "acme") -> dict[str, Any]:
        deadline = time.monotonic() + 60
        attempt = 0
        while True:
            try:
                resp = await self.http.post(f"{self.cp_url}/v1/sessions/route",
                                            json={"tenant_id": tenant, "pipeline_name": PIPELINE})
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # a pooled keep-alive connection the server closed just as it was reused
                # (uvicorn closes idle ones after 5 s); a new connection is asked again
                attempt += 1
                if attempt == 3:
                    raise
                continue
            if resp.status_code == 409 and "no_capacity" in resp.text \
                    and time.monotonic() < deadline:
                # every runtime's heartbeat late on a loaded machine (marked unhealthy until
                # its next beat): ask again
                await asyncio.sleep(0.5)
                continue
            break
        assert resp.status_code == 201, resp.text
        data: dict[str, Any] = resp.json()
        return data

    def rerouter(self, session_id: str, tenant: str = "acme") -> Rerouter:
        return Rerouter(self.cp_url, api_key=KEY, tenant_id=tenant, session_id=session_id)

    async def runtime_health(self) -> dict[str, str]:
        data = (await self.http.get(f"{self.cp_url}/v1/runtimes")).json()
        return {r["runtime_id"]: r["health"] for r in data["runtimes"]}

    async def signals(self, session_id: str) -> list[dict[str, Any]]:
        data = (await self.http.get(f"{self.cp_url}/v1/sessions/{session_id}/signals")).json()
        out: list[dict[str, Any]] = data["signals"]
        return out

    async def scrape(self, rid: str) -> str:
        return (await self.http.get(f"{self.runtimes[rid].url}/metrics")).text


async def db_rows(db_url: str, query: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(_plain(db_url))
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def open_talker(fleet: Fleet, attempts: int = 20, **options: Any) -> Talker:
    """A routed, connected :class:`Talker`. A start that got no ``ready`` within the
    client's open timeout (the runtime's first session compiles the pipeline; a loaded
    machine) is given up and a fresh session is routed instead."""
    for attempt in range(attempts):
        talker = Talker(fleet, (await fleet.route())["session_id"], **options)
        try:
            await talker.connect()
            return talker
        except SessionRefusedError as exc:
            # a runtime that could not start it (its control plane starved: 4503) is asked
            # for a fresh session too; a refusal of the request itself is not
            if exc.code not in (None, 4503) or attempt == attempts - 1:
                raise
    raise SessionRefusedError(None, "no session could be opened")


@dataclass(slots=True)
class TurnResult:
    question: str
    runtime: str | None
    epoch: int
    sent_at: float
    #: closed (committed) | abort:<reason> | interrupted | lost | closed_uncommitted
    outcome: str = "pending"
    #: failovers the session had gone through when the question was sent (None: sending)
    failovers: int | None = None
    committed: bool = False
    turn_id: str | None = None
    reply: str = ""
    audio_frames: int = 0
    first_audio_s: float | None = None
    done_at: float | None = None
    #: the reason of the abort that ended an interrupted turn (the new runtime's report)
    abort_reason: str | None = None


@dataclass(slots=True)
class Talker:
    """One live session that keeps asking questions (see the module docstring)."""

    fleet: Fleet
    session_id: str
    turn_timeout_s: float = 30.0
    detect_s: float = 2.0
    client: FailoverClient | None = None
    turns: list[TurnResult] = field(default_factory=list)
    error: str | None = None
    #: ``error`` events the session sent (bad input, duplicates)
    errors: list[ErrorEvent] = field(default_factory=list)
    on_turn: Callable[[TurnResult], None] | None = None
    #: every output that arrived, grouped: (runtime, the connection's ready epoch, the
    #: output's epoch, its ``epoch`` event's send stamp, superseded, refused) -> count
    outputs: dict[tuple[str, int | None, int | None, int | None, bool, bool], int] = field(
        default_factory=dict)
    _current: TurnResult | None = None
    _terminal: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        # the first start may take long on a loaded machine (the runtime's first session
        # compiles the pipeline); failovers keep the client's own connect timeout
        self.client = await FailoverClient.connect(self.fleet.rerouter(self.session_id),
                                                   detect_s=self.detect_s,
                                                   resume_window_s=60.0,
                                                   connect_timeout_s=30.0)
        self.client.connect_timeout_s = max(6.0, 3 * self.detect_s)
        # the first connection's outputs before this line: none (nothing was asked yet)
        self.client.on_output = self._note
        self._reader = asyncio.create_task(self._read(), name=f"talker-{self.session_id}")

    def _note(self, n: OutputNote) -> None:
        if n.kind == "Clear":  # a retraction, not an output
            return
        key = (n.runtime_id, n.ready_epoch, n.epoch, n.marked_at_ms, n.superseded, n.refused)
        self.outputs[key] = self.outputs.get(key, 0) + 1

    async def _read(self) -> None:
        try:
            await self._consume()
        except Exception as exc:  # recorded: a test or the benchmark reports it
            self.error = f"reader failed: {exc!r}"
            self._terminal.set()

    async def _consume(self) -> None:
        assert self.client is not None
        loop = asyncio.get_running_loop()
        async for ev in self.client.events():
            if isinstance(ev, ErrorEvent):
                self.errors.append(ev)
            cur = self._current
            if cur is None or cur.outcome != "pending":
                continue
            if cur.failovers is not None and len(self.client.failovers) > cur.failovers:
                if cur.turn_id is not None and isinstance(ev, EpochEvent | Stats):
                    # the new connection's bookkeeping (protocol 1.2 names the epoch first):
                    # not an answer about the open turn, whose abort the new runtime reports
                    continue
                cur.outcome = "interrupted"  # its runtime failed while it was pending
                cur.done_at = loop.time()
                if isinstance(ev, TurnEvent) and ev.turn_id == cur.turn_id and \
                        ev.state == "abort":
                    cur.abort_reason = ev.reason
                self._terminal.set()
                continue
            if isinstance(ev, ErrorEvent) and cur.turn_id is None and \
                    ev.code in ("turn_deferred", "turn_rejected"):
                cur.outcome = f"refused:{ev.code}"  # said so, with a reason: not lost
                cur.done_at = loop.time()
                self._terminal.set()
            elif isinstance(ev, TurnEvent):
                if ev.state == "open" and cur.turn_id is None:
                    cur.turn_id = ev.turn_id
                elif ev.turn_id == cur.turn_id and ev.state == "commit":
                    cur.committed = True
                elif ev.turn_id == cur.turn_id and ev.state in ("abort", "close"):
                    cur.outcome = f"abort:{ev.reason}" if ev.state == "abort" else (
                        "closed" if cur.committed else "closed_uncommitted")
                    cur.done_at = loop.time()
                    self._terminal.set()
            elif isinstance(ev, ReplyText) and ev.turn_id == cur.turn_id:
                cur.reply += ev.text
            elif isinstance(ev, AudioOut):
                cur.audio_frames += 1
                if cur.first_audio_s is None:
                    cur.first_audio_s = loop.time() - cur.sent_at
        self._terminal.set()

    async def ask(self, question: str, key: str | None = None) -> TurnResult:
        """Ask ``question`` (``key``: its idempotency key) and wait for its turn's end."""
        assert self.client is not None
        loop = asyncio.get_running_loop()
        turn = TurnResult(question, self.client.runtime_id, self.client.epoch, loop.time())
        self._current = turn
        self._terminal.clear()
        self.turns.append(turn)
        try:
            await self.client.send_text(question, key)
        except Exception as exc:  # the connection died under the send: the runtime failed
            turn.outcome, turn.done_at = f"interrupted:{type(exc).__name__}", loop.time()
            await self._until_reconnected()
            return turn
        # sent on this connection (a send to a connection that just died goes to its successor)
        turn.failovers = len(self.client.failovers)
        turn.runtime, turn.epoch = self.client.runtime_id, self.client.epoch
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._terminal.wait(), self.turn_timeout_s)
        if turn.outcome == "pending":
            turn.outcome = "lost" if not self.client.ended else "session_ended"
        if self.on_turn is not None:
            self.on_turn(turn)
        return turn

    async def _until_reconnected(self) -> None:
        assert self.client is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.client._ready.wait(), 60)

    async def talk(self, stop: asyncio.Event, gap_s: float = 0.2) -> None:
        k = 0
        while not stop.is_set() and self.client is not None and not self.client.ended:
            await self.ask(QUESTIONS[k % len(QUESTIONS)])
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), gap_s)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception, SessionRefusedError):
                await self.client.end()
            if self._reader is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._reader), 30)
            await self.client.close()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
