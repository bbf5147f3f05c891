"""``rspp serve`` as a real process: embedded control plane, probes, registration, drain.

The process publishes the offline voice assistant into its embedded control plane
(SQLite file), registers its runtime through the control-plane API, reports ready
on /readyz, serves /metrics, drains on SIGTERM and exits 0 after deregistering.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from rspp.client import LiveClient, session_url
from rspp.controlplane import ControlPlane, ControlPlaneSettings
from rspp.controlplane._server import free_port
from rspp.providers.offline import EspeakTTS
from rspp.testing import with_patient_budgets
from rspp.transports import (
    AudioOut,
    Clear,
    EpochEvent,
    ReplyText,
    ServerEvent,
    TurnEvent,
    read_wav,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-e2e-admin-key"
VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"


def _patient_spec(tmp_path: Path) -> Path:
    """The voice assistant with room for a loaded machine: served sessions enforce wall-clock
    budgets, and with both cores busy the offline STT runs slower than real time, so patient
    budgets, provider timeouts and a deep VAD -> STT edge keep turns from ending on time or
    load-dependent drops (a replay reproduces the session either way: budgets still hold).
    The edge's watermarks and byte limit are raised with its depth: the profile's audio
    watermark (75 items, 1.5 s of audio) shed frames as soon as the STT fell 1.5 s behind,
    at a place the machine's load chose, and the replay (whose STT keeps up) shed them at
    another (an ORDERING divergence of the watermark and drop_notice records, seen beside
    stress-ng at load ~40)."""
    text = with_patient_budgets(VOICE.read_text())
    for old, new in (
        ("  stt:\n    primary: pocketsphinx\n",
         "  stt:\n    primary: pocketsphinx\n    timeout_ms: 20000\n"),
        ("tts: {primary: espeak}", "tts: {primary: espeak, timeout_ms: 20000}"),
        ("  - {from: vad.audio, to: stt.audio}",
         "  - {from: vad.audio, to: stt.audio, buffer: {max_queue_ms: 20000, "
         "max_queue_items: 5000, max_queue_bytes: 1000000, max_latency_contribution_ms: 20000, "
         "watermarks: {queue_items: {high: 4000, low: 1000}}}}"),
    ):
        assert old in text, old  # the example spec changed: update this edit
        text = text.replace(old, new, 1)
    spec = tmp_path / "voice.yaml"
    spec.write_text(text)
    return spec


async def _runtimes(db: str) -> list[str]:
    cp = await ControlPlane.open(ControlPlaneSettings(db_url=db, admin_key=KEY))
    try:
        async with cp.store.engine.connect() as conn:
            return [r.runtime_id for r in await cp.routing.all_in(conn)]
    finally:
        await cp.close()


def test_embedded_serve_registers_reports_ready_and_drains_on_sigterm(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    # no SPEC, started outside the repository: the packaged offline assistant is served
    srv = serve_process("--db", db, "--api-key", KEY, "--heartbeat-interval", "0.2",
                        cwd=tmp_path).wait_ready()
    assert any("pipeline voice-assistant@1.0.0" in line for line in srv.banner), srv.banner
    # started: the start-up heap is frozen out of the collector's scans (server/_loop.py)
    frozen = re.search(r"(\d+) start-up objects frozen out of garbage collection", srv.banner[-1])
    assert frozen is not None and int(frozen.group(1)) > 10_000, srv.banner
    assert httpx.get(f"{srv.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{srv.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    auth = {"Authorization": f"Bearer {KEY}"}
    runtimes = httpx.get(f"{srv.url}/v1/runtimes", headers=auth).json()["runtimes"]
    assert [(r["runtime_id"], r["health"]) for r in runtimes] == [(srv.runtime_id, "healthy")]
    assert runtimes[0]["endpoint"] == srv.url.replace("http://", "ws://")
    assert httpx.get(f"{srv.url}/v1/runtimes").status_code == 401  # the CP API stays guarded
    pipelines = httpx.get(f"{srv.url}/v1/pipelines", headers=auth).json()
    assert "voice-assistant" in str(pipelines)
    metrics = httpx.get(f"{srv.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "rspp_runtime_ready 1.0" in metrics.text and "rspp_sessions_live 0.0" in metrics.text
    code, out, err = srv.terminate()
    assert code == 0, err
    assert "draining" in out and "stopped" in out
    assert asyncio.run(_runtimes(db)) == []  # deregistered on exit


def _samples(exposition: str) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, tuple(sorted(s.labels.items())), s.value)
            for fam in text_string_to_metric_families(exposition) for s in fam.samples]


def test_serve_refuses_to_start_without_its_control_plane(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    down = f"http://127.0.0.1:{free_port()}"
    res = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve", "--port", "0",
         "--control-plane", down, "--api-key", "k"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "error: control plane: unavailable" in res.stderr and "unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    nokey = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve",
         "--control-plane", down], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False)
    assert nokey.returncode == 2 and "--api-key" in nokey.stderr


def test_talk_to_embedded_serve_answers_barges_in_and_the_timeline_replays(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path
) -> None:
    """The main job live: ``rspp talk`` speaks a question over WebSocket to the CP-governed
    runtime and barges in on the reply: ``clear``, the first turn aborted, the second
    answered with reply audio; the served timeline validates and replays like a
    ``rspp run`` timeline."""
    timelines = tmp_path / "timelines"
    spec = _patient_spec(tmp_path)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--record-level", "L2", "--kernel-overhead-budget-us", "0").wait_ready()
    # the tenant's policy lets its sessions record at L2 (what a replay needs)
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    reply = tmp_path / "reply.wav"
    talk = _rspp("talk", "--server", srv.url, "--tenant", "acme", "--input",
                 str(spoken["question"]), "--barge-in", f"{spoken['interrupt']}@0.5",
                 "--output", str(reply), env=env)
    assert talk.returncode == 0, talk.stdout + talk.stderr
    out = talk.stdout
    assert "you: what is the weather" in out and "you: what is your name" in out, out
    assert "[cleared]" in out and "aborted: cancelled" in out, out
    assert "assistant: My name is" in out and "commit" in out, out
    assert reply.stat().st_size > 16000  # about a second of 16 kHz PCM16 or more
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'rspp_turns_total{outcome="commit",pipeline_version="voice-assistant@1.0.0"}' in metrics
    # every reply frame that left was timed against its real-time slot: at least the
    # half second of 20 ms frames the client wrote
    late = re.search(r'^rspp_egress_lateness_seconds_count\{transport="websocket"\} (\S+)$',
                     metrics, re.M)
    assert late is not None and float(late[1]) >= 25, metrics
    # how long events waited on the graph's edges, sampled by the session's telemetry
    waits = {dict(lab)["edge_id"]: value for name, lab, value in _samples(metrics)
             if name == "rspp_edge_latency_seconds_count"
             and dict(lab)["pipeline_version"] == "voice-assistant@1.0.0"}
    assert waits and all(n >= 1 for n in waits.values()), metrics
    assert all(re.fullmatch(r"[\w.]+->[\w.]+", edge) for edge in waits), waits
    # the kernel overhead of served sessions is measured and held against the budget (0 us)
    over = re.search(r'^rspp_kernel_overhead_budget_exceeded_total\{pipeline_version='
                     r'"voice-assistant@1.0.0"\} (\S+)$', metrics, re.M)
    assert over is not None and float(over[1]) >= 1, metrics
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err
    (timeline,) = timelines.glob("*.jsonl")
    plans = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
             if '"resolved_turn_plan"' in x]
    assert len(plans) >= 2 and all(p["authority_epoch"] == 1 for p in plans)
    # the plan's snapshots came from the control plane (route-pinned version), not a local bundle
    assert all(":pinned:" in p["snapshot_provenance"]["version_resolution_snapshot"]
               for p in plans)
    _assert_replays(timeline, spec)


def _say(text: str) -> bytes:
    async def run() -> bytes:
        tts = EspeakTTS(sample_rate=16000, voice="en-us", words_per_minute=175)
        return b"".join([chunk.pcm async for chunk in tts.synthesize(text)])

    return asyncio.run(run())


class _Conversation:
    """A live client that speaks each question once the previous turn has closed."""

    def __init__(self, client: LiveClient) -> None:
        self.client = client
        self.log: list[ServerEvent] = []
        self.closed: list[str] = []
        self.first_audio = asyncio.Event()

    async def read(self) -> None:
        async for ev in self.client.events():
            self.log.append(ev)
            if isinstance(ev, AudioOut):
                self.first_audio.set()
            elif isinstance(ev, TurnEvent) and ev.state == "close":
                self.closed.append(ev.turn_id)

    async def silence_until(self, done: Callable[[], bool]) -> None:
        """An open microphone: 20 ms of silence in real time until ``done()``."""
        loop = asyncio.get_running_loop()
        t0, k = loop.time(), 0
        while not done():
            await self.client.send_audio(bytes(640))
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))

    async def speak(self, *questions: bytes) -> None:
        for n, pcm in enumerate(questions, start=1):
            await self.client.stream_pcm(pcm, 16000)
            await self.silence_until(lambda n=n: len(self.closed) >= n)  # type: ignore[misc]
        await self.client.end()


async def _routed(cp: httpx.AsyncClient) -> tuple[str, LiveClient]:
    """A session of tenant acme routed by the control plane, and a client connected to it."""
    route = (await cp.post("/v1/sessions/route", json={
        "tenant_id": "acme", "pipeline_name": "voice-assistant"})).json()
    sid = route["session_id"]
    return sid, await LiveClient.connect(session_url(route["endpoint"], sid),
                                         token=route["token"], msgpack=True)


def test_lease_rotation_mid_turn_fences_the_old_epoch_over_the_websocket(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path
) -> None:
    """Rotate the lease through the control-plane HTTP API while a reply plays (T8): the
    client is told why its audio was cleared, and the served timeline replays the rotation
    (no AUTHORITY divergence) while a copy without the rotation record does not."""
    timelines = tmp_path / "timelines"
    spec = _patient_spec(tmp_path)
    srv = serve_process(str(spec), "--db",
                        f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", "--api-key", KEY,
                        "--timeline-dir", str(timelines), "--lease-ttl-ms", "1500",
                        "--record-level", "L2").wait_ready()
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})
    help_q = _say("what can you do")  # the help reply plays for several seconds
    name_q, _ = read_wav(spoken["interrupt"])  # "what is your name"

    async def converse() -> tuple[str, dict[str, Any], _Conversation]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30,
                                     headers={"Authorization": f"Bearer {KEY}"}) as cp:
            sid, client = await _routed(cp)
            talk = _Conversation(client)
            async with client:
                reader = asyncio.create_task(talk.read())
                speaker = asyncio.create_task(talk.speak(help_q, name_q))
                await asyncio.wait_for(talk.first_audio.wait(), 90)
                rotated = await cp.post(f"/v1/leases/{sid}/rotate")
                assert rotated.status_code == 200, rotated.text
                await asyncio.wait_for(asyncio.gather(reader, speaker), 120)
            return sid, rotated.json()["lease"], talk

    sid, lease, talk = asyncio.run(converse())
    assert lease["epoch"] == 2
    turns = [e for e in talk.log if isinstance(e, TurnEvent)]
    first, second = (e.turn_id for e in turns if e.state == "open")
    # the first turn was fenced: aborted, its audio cleared, no frame of it after that
    abort = next(i for i, e in enumerate(talk.log) if isinstance(e, TurnEvent)
                 and e.turn_id == first and e.state == "abort")
    cleared = next(i for i, e in enumerate(talk.log) if isinstance(e, Clear)
                   and e.turn_id == first)
    played = [i for i, e in enumerate(talk.log) if isinstance(e, AudioOut) and e.turn_id == first]
    assert played and max(played) < min(abort, cleared), (played[-1], abort, cleared)
    clear = talk.log[cleared]
    assert isinstance(clear, Clear) and clear.reason == "deauthorized_drain"  # not a barge-in
    # the next turn ran (and was answered) on the new epoch
    assert [(e.turn_id, e.state) for e in turns if e.turn_id == second][-2:] == [
        (second, "commit"), (second, "close")]
    assert any(isinstance(e, ReplyText) and e.turn_id == second and "name" in e.text
               for e in talk.log), talk.log
    assert any(isinstance(e, AudioOut) and e.turn_id == second for e in talk.log)
    # protocol 1.2: every event is of the epoch last named (ready, then ``epoch`` events);
    # the rotation is named before anything of the new epoch, after the old turn's audio
    marks = [(i, e) for i, e in enumerate(talk.log) if isinstance(e, EpochEvent)]
    assert marks and marks[0][0] == 0 and marks[0][1].lease_epoch == 1
    assert [e.lease_epoch for _, e in marks] == sorted(e.lease_epoch for _, e in marks)
    assert [e.sent_at_ms for _, e in marks] == sorted(e.sent_at_ms for _, e in marks)
    to_new = next(i for i, e in marks if e.lease_epoch == 2)
    assert max(played) < to_new < min(i for i, e in enumerate(talk.log)
                                      if getattr(e, "turn_id", None) == second)
    assert {e.lease_epoch for e in turns if e.turn_id == second} == {2}
    assert {e.lease_epoch for e in turns if e.turn_id == first and e.state == "open"} == {1}
    assert talk.client.refused == 0  # the runtime sent nothing of epoch 1 after naming 2
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err
    records = [json.loads(x)["record"]
               for x in (timelines / f"{sid}.jsonl").read_text().splitlines()]
    plans = {r["turn_id"]: r for r in records if "snapshot_provenance" in r}
    assert (plans[first]["authority_epoch"], plans[second]["authority_epoch"]) == (1, 2)
    drain = next(i for i, r in enumerate(records) if r.get("signal") == "deauthorized_drain")
    assert (records[drain]["turn_id"], records[drain]["reason"]) == (first, "lease_rotated")
    # the rotation the session learned from the control plane is recorded (a replay input)
    (rotation,) = [i for i, r in enumerate(records) if r.get("signal") == "lease_rotated"]
    assert rotation < drain and (records[rotation]["emitted_by"],
                                 records[rotation]["authority_epoch"]) == ("CP-07", 2)
    assert any(r.get("outcome_kind") == "deauthorized_drain" and r.get("turn_id") == first
               for r in records)
    stale = [r for r in records[drain:] if str(r.get("edge_id", "")).startswith("output.")
             and r.get("authority_epoch", 2) < 2]
    assert stale == []  # nothing of the old epoch left the runtime after the rotation
    commit = [r for r in records if r.get("signal") == "commit" and r["turn_id"] == second]
    assert [r["authority_epoch"] for r in commit] == [2]
    timeline = timelines / f"{sid}.jsonl"
    _assert_replays(timeline, spec)
    # tampered: without its rotation record the replay stays at epoch 1 and says so
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(x for x in timeline.read_text().splitlines(keepends=True)
                                if '"signal":"lease_rotated"' not in x))
    report = tmp_path / "tampered.replay.json"
    out = _rspp("replay", str(tampered), "--spec", str(spec), "--report", str(report))
    assert out.returncode == 1 and json.loads(report.read_text())["divergences"]["AUTHORITY"]


# its own waits (first audio 90 s, the close 60 s, the replay) outlast the 120 s default at
# load ~40 (two of eight runs beside stress-ng timed out in the replay)
@pytest.mark.timeout(300)
def test_lease_revoked_mid_reply_sends_nothing_more_and_closes_with_the_reason(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    """Revoke the lease through the control-plane HTTP API while a reply plays (T8, loss):
    nothing of the lost epoch reaches the client (no ``clear``, no commit or abort of the
    turn), the connection closes ``authority_lost:lease_revoked``, and the served
    timeline replays the loss with no divergence."""
    timelines = tmp_path / "timelines"
    spec = _patient_spec(tmp_path)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--lease-ttl-ms", "1500", "--record-level", "L2").wait_ready()
    auth = {"Authorization": f"Bearer {KEY}"}
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})
    help_q = _say("what can you do")  # the help reply plays for several seconds

    async def converse() -> tuple[str, list[ServerEvent], LiveClient]:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30, headers=auth) as cp:
            sid, client = await _routed(cp)
            talk = _Conversation(client)
            reader = asyncio.create_task(talk.read())  # until the server closes

            async def speak() -> None:
                with contextlib.suppress(ConnectionClosed):
                    await client.stream_pcm(help_q, 16000)
                    await talk.silence_until(reader.done)

            speaker = asyncio.create_task(speak())
            async with client:
                await asyncio.wait_for(talk.first_audio.wait(), 90)
                revoked = await cp.post(f"/v1/leases/{sid}/revoke")
                assert revoked.status_code == 200, revoked.text
                await asyncio.wait_for(asyncio.gather(reader, speaker), 60)
            return sid, talk.log, client

    sid, log, client = asyncio.run(converse())
    assert (client.close_code, client.close_reason) == (1000, "authority_lost:lease_revoked")
    first = next(e.turn_id for e in log if isinstance(e, TurnEvent) and e.state == "open")
    # nothing of the lost epoch leaves, not even a clear: the close reason is the signal
    assert [e for e in log if isinstance(e, TurnEvent) and e.turn_id == first]
    assert not [e for e in log if isinstance(e, Clear)]
    assert not [e for e in log if isinstance(e, TurnEvent) and e.state in ("commit", "abort")]
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err
    timeline = timelines / f"{sid}.jsonl"
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    lost = [r for r in records if r.get("signal") == "deauthorized_drain"
            and not r.get("turn_id")]
    assert [(r["emitted_by"], r["reason"]) for r in lost] == [("RK-24", "lease_revoked")]
    _assert_replays(timeline, spec)


def _assert_replays(timeline: Path, spec: Path) -> None:
    """The served timeline validates and replays with no divergence that counts."""
    valid = _rspp("contracts", "validate", str(timeline))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    report = timeline.with_suffix(".replay.json")
    out = _rspp("replay", str(timeline), "--spec", str(spec), "--mode", "playback",
                "--report", str(report))
    doc = json.loads(report.read_text())
    assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")
               ), doc["findings"]
    assert out.returncode == 0, out.stdout + out.stderr


def _rspp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
