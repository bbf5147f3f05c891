"""Gated rollouts live (issue 18): ``rspp cp serve`` on PostgreSQL, one ``rspp serve
--control-plane`` runtime, live WebSocket clients typing one turn per session.

Both pipeline versions reach an OpenAI-compatible fake (chat + speech) over its real
wire protocol; a slow canary's TTS is a second fake that stalls every speech request.
The runtime reports each closed turn's gate sample; the control plane decides:

- the slow canary's turns still commit (their audio is late, not lost), fail gate 2
  (first output) and gate 7 (end to end), and the canary is rolled back automatically:
  no session routed after the decision gets it, and the audit entry carries the failing
  gate table;
- a healthy canary is promoted 40% -> 70% -> 100% after the configured turns;
- while the control plane is stopped, a live session keeps taking turns at the same
  latency; the gate samples beyond the runtime's bound are dropped and counted (runtime
  ``/metrics``, log, and reported to the control plane once it is back).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from rspp.client import LiveClient, route_session
from rspp.controlplane import ControlPlaneSettings
from rspp.controlplane._server import free_port
from rspp.testing.fakes import FakeOpenAI
from rspp.testing.fakes._faults import Fault
from rspp.testing.fakes._server import serve_asgi
from rspp.transports import AudioOut, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "gated-e2e-admin-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def _rspp(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``rspp ARGS`` in a child process (the event loop keeps serving the fakes)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rspp.cli import main; main()", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


@dataclass
class ControlPlaneProcess:
    url: str
    args: list[str]
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from rspp.cli import main; main()", *self.args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=self.env)
        async with httpx.AsyncClient() as http:
            while True:  # readiness: the process answers /healthz
                assert self.proc.returncode is None, "rspp cp serve exited"
                try:
                    if (await http.get(f"{self.url}/healthz", timeout=5)).status_code == 200:
                        return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(self.proc.wait(), timeout=60)


@dataclass
class Stack:
    cp: ControlPlaneProcess
    runtime: ServeProcess
    healthy: str
    slow: str
    env: dict[str, str]
    http: httpx.AsyncClient
    #: the spec text of a version (conftest's ``fake_openai_spec``)
    spec: Callable[..., str]
    #: the runtime's stderr (its log), once it has exited
    runtime_log: str = ""

    async def cli(self, *args: str) -> str:
        code, out, err = await _rspp("cp", *args, "--server", self.cp.url, "--api-key", KEY,
                                     env=self.env)
        assert code == 0, out + err
        return out

    async def publish(self, tmp: Path, version: str, tts: str) -> None:
        spec = tmp / f"gated-{version}.yaml"
        spec.write_text(self.spec(self.healthy, tts, name="gated", version=version,
                                  description=f"v{version}", turn_ms=5000,
                                  timeout_ms=10000))
        await self.cli("publish", str(spec))

    async def rollout(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get("/v1/pipelines/gated/rollout")).json()
        return body["rollout"] or {}

    async def turn(self, text: str = "hello") -> tuple[str, float]:
        """One live session with one typed turn that commits: (pipeline version, s to
        first audio)."""
        target = await route_session(self.cp.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="gated")
        loop = asyncio.get_running_loop()
        async with await LiveClient.connect(target.url, token=target.token) as client:
            started = loop.time()
            first = await _one_turn(client, text, started)
            await client.end()
        return str(target.pipeline_version), first

    async def turns_until(self, done: Callable[[dict[str, Any]], bool],
                          limit: int = 60) -> list[tuple[str, float]]:
        """Sessions, three at a time, until the rollout state satisfies ``done``:
        (pipeline version, s to first audio) of each."""
        turns: list[tuple[str, float]] = []
        while not done(await self.rollout()):
            assert len(turns) < limit, (turns, await self.rollout())
            turns.extend(await asyncio.gather(*(self.turn() for _ in range(3))))
            await self.settled()
        return turns

    async def settled(self) -> None:
        """Wait until the runtime sent every queued gate sample (its /metrics says so)."""
        async with httpx.AsyncClient() as http:
            while True:
                metrics = (await http.get(f"{self.runtime.url}/metrics")).text
                if "rspp_gate_samples_queued 0.0" in metrics:
                    return
                await asyncio.sleep(0.05)


async def _one_turn(client: LiveClient, text: str, started: float) -> float:
    """Type one turn, which must commit; seconds to its first reply audio."""
    loop = asyncio.get_running_loop()
    await client.send_text(text)
    first: float | None = None
    async for ev in client.events():
        if isinstance(ev, AudioOut) and first is None:
            first = loop.time() - started
        if isinstance(ev, TurnEvent) and ev.state in ("commit", "abort"):
            assert ev.state == "commit", ev
        if isinstance(ev, TurnEvent) and ev.state == "close":
            break
    assert first is not None
    return first


@asynccontextmanager
async def _schema(pg_url: str) -> AsyncIterator[str]:
    schema = "gated_" + secrets.token_hex(5)
    engine = create_async_engine(pg_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await engine.dispose()


@asynccontextmanager
async def _stack(pg_url: str, serve_process: Callable[..., ServeProcess],
                 spec: Callable[..., str], *serve_args: str) -> AsyncIterator[Stack]:
    healthy, slow = FakeOpenAI(reply=lambda _: "Sure."), FakeOpenAI()
    slow.faults.sticky = Fault("stall", seconds=2.5)  # every speech request waits 2.5 s
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["OPENAI_API_KEY"] = "sk-fake"
    port = free_port()
    async with _schema(pg_url) as schema, serve_asgi(healthy.app) as h, \
            serve_asgi(slow.app) as s:
        cp = ControlPlaneProcess(
            f"http://127.0.0.1:{port}",
            ["cp", "serve", "--db", pg_url.replace("+asyncpg", ""), "--db-schema", schema,
             "--admin-key", KEY, "--port", str(port)], env)
        await cp.start()
        os.environ["OPENAI_API_KEY"] = "sk-fake"
        try:
            runtime = serve_process("--control-plane", cp.url, "--api-key", KEY,
                                    "--heartbeat-interval", "0.5", "--gate-interval", "0.1",
                                    *serve_args).wait_ready()
            async with httpx.AsyncClient(base_url=cp.url, headers=AUTH, timeout=30) as http:
                stack = Stack(cp, runtime, h, s, env, http, spec)
                yield stack
            code, _, stack.runtime_log = runtime.terminate()
            assert code == 0, stack.runtime_log
        finally:
            os.environ.pop("OPENAI_API_KEY", None)
            await cp.stop()


async def test_slow_tts_canary_fails_its_gates_and_is_rolled_back(
        pg_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str]) -> None:
    async with _stack(pg_url, serve_process, fake_openai_spec) as st:
        await st.publish(tmp_path, "1.0.0", st.healthy)
        await st.publish(tmp_path, "1.1.0", st.slow)
        await st.cli("rollback", "gated", "--to", "1.0.0")
        await st.cli("rollout", "gated", "--to", "1.1.0", "--percent", "50",
                     "--promote-after", "100", "--rollback-on-gates", "--window", "10",
                     "--min-samples", "2")
        turns = await st.turns_until(lambda r: r.get("canary_version") is None)
        slow = [first for version, first in turns if version == "1.1.0"]
        assert len(slow) >= 2 and min(slow) > 2.4  # the window's minimum; late, committed
        # after the decision no new session gets the canary
        after = [str((await route_session(st.cp.url, tenant_id="acme", api_key=KEY,
                                          pipeline_name="gated")).pipeline_version)
                 for _ in range(20)]
        assert set(after) == {"1.0.0"}
        version, first_audio_s = await st.turn()
        assert version == "1.0.0" and first_audio_s < 2.4
        entries = (await st.http.get("/v1/audit")).json()["entries"]
        rollback = [e for e in entries if e["action"] == "rollout.gate_rollback"]
        assert len(rollback) == 1 and rollback[0]["actor"] == "control-plane:gates"
        detail = rollback[0]["detail"]
        # the slow speech's first audio comes 2.5 s after turn open (> 2 s after the typed
        # text): the canary's committed turns fail gate 2 (first output) and gate 7 (end to
        # end)
        assert {2, 7} <= set(detail["failing_gates"]) and detail["canary_version"] == "1.1.0"
        gates = {g["gate"]: g for g in detail["canary"]["gates"]}
        assert gates[2]["status"] == "fail" and gates[2]["p95"] > 1500
        assert gates[2]["threshold"] == "p95 <= 1500 ms" and gates[2]["count"] >= 2
        assert gates[7]["status"] == "fail" and gates[7]["p95"] > 2000
        assert gates[7]["threshold"] == "p50 <= 1500 ms, p95 <= 2000 ms"
        assert gates[6]["status"] == "pass"  # one terminal (commit) then close, every turn
        status = await st.cli("rollout", "status", "gated")
        assert "rolled_back" in status and "gate 2 (first output) failed" in status
        assert "gate 7 (end to end) failed" in status
        metrics = (await st.http.get("/metrics")).text
        for gate in (2, 7):
            assert (f'rspp_cp_gate_pass{{gate="{gate}",pipeline="gated",version="1.1.0"}} 0.0'
                    in metrics)


async def test_healthy_canary_is_promoted_to_100_after_the_configured_turns(
        pg_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str]) -> None:
    async with _stack(pg_url, serve_process, fake_openai_spec) as st:
        await st.publish(tmp_path, "1.0.0", st.healthy)
        await st.publish(tmp_path, "1.1.0", st.healthy)
        await st.cli("rollback", "gated", "--to", "1.0.0")
        out = await st.cli("rollout", "gated", "--to", "1.1.0", "--percent", "40",
                           "--steps", "70,100", "--promote-after", "2",
                           "--rollback-on-gates", "--window", "20", "--min-samples", "2")
        assert json.loads(out)["rollout"]["percent"] == 40
        await st.turns_until(lambda r: r.get("stable_version") == "1.1.0")
        entries = (await st.http.get("/v1/audit")).json()["entries"]
        decisions = [(e["action"], e["detail"]["from_percent"], e["detail"]["to_percent"])
                     for e in entries if e["action"].startswith("rollout.gate_")]
        assert decisions == [("rollout.gate_promote", 40.0, 70.0),
                             ("rollout.gate_complete", 70.0, 100.0)]
        canary_turns = [e["detail"]["canary"]["samples"] for e in entries
                        if e["action"].startswith("rollout.gate_")]
        assert all(n >= 2 for n in canary_turns)
        status = await st.cli("rollout", "status", "gated")
        assert "promoted" in status and "promoted to 100%" in status
        assert (await st.turn())[0] == "1.1.0"


async def test_samples_lost_while_the_control_plane_is_stopped_are_counted(
        pg_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str]) -> None:
    # a lease outliving the outage; one queued sample at most, so the outage drops
    async with _stack(pg_url, serve_process, fake_openai_spec, "--lease-ttl-ms", "120000",
                      "--gate-queue", "1") as st:
        await st.publish(tmp_path, "1.0.0", st.healthy)
        target = await route_session(st.cp.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="gated")
        loop = asyncio.get_running_loop()
        async with await LiveClient.connect(target.url, token=target.token) as client:
            before = await _one_turn(client, "hello", loop.time())
            await st.settled()
            await st.cp.stop()
            during = [await _one_turn(client, "hello", loop.time()) for _ in range(3)]
            async with httpx.AsyncClient() as probe:
                metrics = (await probe.get(f"{st.runtime.url}/metrics")).text
            assert "rspp_gate_samples_dropped_total 2.0" in metrics
            assert "rspp_gate_samples_queued 1.0" in metrics
            # sessions continue unaffected: same order of latency, well inside gate 2
            assert all(t < max(1.0, 4 * before) for t in during), (before, during)
            await st.cp.start()
            await st.settled()  # the queued sample went through, with the drop count
            after = await _one_turn(client, "hello", loop.time())
            assert after < max(1.0, 4 * before)
            await st.settled()
            await client.end()
        cp_metrics = (await st.http.get("/metrics")).text
        assert "rspp_cp_gate_samples_dropped_by_runtimes_total 2.0" in cp_metrics
        assert "rspp_cp_gate_samples_received_total 2.0" in cp_metrics
    assert "gate samples: control plane unavailable" in st.runtime_log
    assert "gate samples: queue full (1); dropping" in st.runtime_log


async def test_a_session_keeps_taking_turns_on_its_frozen_plan_past_the_snapshot_ttl(
        pg_url: str, serve_process: Callable[..., ServeProcess], tmp_path: Path,
        fake_openai_spec: Callable[..., str]) -> None:
    """Issue 14: the control plane unreachable mid-session, the session continues on its
    frozen plan until its lease can no longer be renewed. Its last turn-start bundle
    expires (``snapshot_ttl_ms``, 5 s) long before the lease (120 s): a turn typed once the
    wall clock is past every snapshot that bundle can hold still commits with reply audio,
    opened on the expired snapshots (counted and logged by the runtime). The session's
    timeline marks that turn's plan: its DeterminismContext holds the ``snapshot_freeze``
    input (the failed turn-start call, naming the expired snapshots), the turn before has
    none, and ``rspp replay`` re-freezes both plans with no divergence."""
    timelines = tmp_path / "timelines"
    async with _stack(pg_url, serve_process, fake_openai_spec, "--lease-ttl-ms",
                      "120000", "--timeline-dir", str(timelines),
                      "--record-level", "L2") as st:
        await st.publish(tmp_path, "1.0.0", st.healthy)
        replayable = await st.http.post("/v1/configs/policy/acme",
                                        json={"body": {"recording_level": "L2"}})
        assert replayable.status_code < 300, replayable.text
        ttl_ms = ControlPlaneSettings(db_url="sqlite://").snapshot_ttl_ms
        target = await route_session(st.cp.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="gated")
        loop = asyncio.get_running_loop()
        async with await LiveClient.connect(target.url, token=target.token) as client:
            sid = client.ready.session_id
            await _one_turn(client, "hello", loop.time())
            await st.cp.stop()
            # every bundle the runtime holds was issued before the process stopped: once
            # the wall clock is past that moment plus the TTL, all its snapshots expired
            expired_after_ms = time.time() * 1000 + ttl_ms
            while time.time() * 1000 <= expired_after_ms:  # noqa: ASYNC110 - the wall clock
                await asyncio.sleep(0.1)
            await _one_turn(client, "hello", loop.time())  # commits, with reply audio
            async with httpx.AsyncClient() as probe:
                metrics = (await probe.get(f"{st.runtime.url}/metrics")).text
            assert "rspp_turns_on_frozen_snapshots_total 1.0" in metrics
            await st.cp.start()
            await client.end()
    assert "opens on its frozen plan" in st.runtime_log
    assert "expired snapshots used: version_resolution" in st.runtime_log
    timeline = timelines / f"{sid}.jsonl"  # complete: the runtime has exited
    plans = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
             if json.loads(x)["kind"] == "resolved_turn_plan"]
    marks = [[i for i in p["determinism"]["nondeterministic_inputs"]
              if i["input_key"] == "snapshot_freeze"] for p in plans]
    assert marks[0] == [] and len(marks) == 2, marks
    (frozen,) = marks[1]
    assert frozen["source"] == "external_call"
    assert frozen["evidence_ref"].startswith("control_plane_unreachable;expired:version_resolution")
    # the frozen turn used the snapshots the turn before had: the same provenance
    assert plans[1]["snapshot_provenance"] == plans[0]["snapshot_provenance"]
    code, out, err = await _rspp("contracts", "validate", str(timeline))
    assert code == 0, out + err
    spec = tmp_path / "gated-1.0.0.yaml"
    report = tmp_path / "replay.json"
    code, out, err = await _rspp("replay", str(timeline), "--spec", str(spec),
                                 "--report", str(report))
    doc = json.loads(report.read_text())
    assert all(n == 0 for c, n in doc["divergences"].items() if c != "TIMING"), doc["findings"]
    assert code == 0, out + err
