"""A fleet: ``rspp cp serve`` on PostgreSQL + two ``rspp serve --control-plane`` runtimes.

Real processes on loopback: the control plane (PostgreSQL, a fresh schema per test)
routes live WebSocket sessions to both runtimes; a 50 % canary rollout puts both
pipeline versions live (each session's turn plans name its version); a bad, an
expired and a wrong-tenant token are each refused with a close code and reason
before any audio; SIGTERM of the runtime holding a session mid-turn makes its
/readyz fail and the route place new sessions on the other runtime, lets the turn
finish, closes the session with a clear reason and exits 0 (F-103, F-106, F-088).
A control plane that crashes mid-turn: the turn finishes on its frozen plan, the
session drains when its lease can no longer be renewed, new sessions are refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, SessionRefusedError, TalkOptions, TalkResult, talk
from rspp.client import session_url as ws_url
from rspp.controlplane import TokenIssuer, TokenKeys
from rspp.controlplane._rollout import cohort_bucket
from rspp.testing import with_patient_budgets
from rspp.transports import ServerEvent, TurnEvent, read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "fleet-e2e-admin-key"
REPO = Path(__file__).resolve().parents[2]
# served sessions enforce wall-clock budgets: patient ones, the machine may be busy
VOICE = with_patient_budgets(
    (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text())
#: each runtime's region; a route asking for a region prefers its runtime (placement is soft)
REGIONS = {"rt-a": "east", "rt-b": "west"}
CLI = [sys.executable, "-c", "from rspp.cli import main; main()"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}


@dataclass
class ControlPlaneProcess:
    url: str
    #: its Ed25519 signing key, when the test forges tokens with it
    keys: TokenKeys | None = None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        resp = httpx.request(method, f"{self.url}{path}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json()

    async def api_async(self, method: str, path: str, body: Any = None) -> Any:
        """:meth:`api` without blocking the event loop of a live conversation."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30,
                                     headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            resp = await http.request(method, path, json=body)
        assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
        return resp.json()


@pytest.fixture
def control_plane(cp_serve: Callable[..., ControlPlaneServer],
                  tmp_path: Path) -> ControlPlaneProcess:
    """``rspp cp serve`` on PostgreSQL (its own schema) with an Ed25519 token key file."""
    key_file = tmp_path / "token.pem"
    url, _, _ = cp_serve("postgresql", ADMIN, "--token-key-file", str(key_file))
    public = httpx.get(f"{url}/v1/tokens/keys", timeout=10,
                       headers={"Authorization": f"Bearer {ADMIN}"}).json()["public_pem"]
    return ControlPlaneProcess(url, TokenKeys(algorithm="EdDSA", private_pem=key_file.read_text(),
                                              public_pem=public))


def _route(cp: ControlPlaneProcess, region: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"tenant_id": "acme", "pipeline_name": "voice-assistant", **extra}
    if region is not None:
        body["attributes"] = {"region": region}
    route: dict[str, Any] = cp.api("POST", "/v1/sessions/route", body)
    return route


def _wait_status(cp: ControlPlaneProcess, session_id: str, status: str) -> None:
    """Poll the control plane's record of a session until it reaches ``status``."""
    deadline = time.monotonic() + 60
    while cp.api("GET", f"/v1/sessions/{session_id}")["status"] != status:
        assert time.monotonic() < deadline, f"session {session_id} never became {status}"
        time.sleep(0.05)


async def _health(cp: ControlPlaneProcess, runtime_id: str) -> str:
    runtimes = (await cp.api_async("GET", "/v1/runtimes"))["runtimes"]
    return str(next(r["health"] for r in runtimes if r["runtime_id"] == runtime_id))


def _session_ids(n_each: int) -> tuple[list[str], list[str]]:
    """Session ids in the 50 % canary cohort of 2.0.0 and out of it (the documented rule)."""
    canary: list[str] = []
    stable: list[str] = []
    k = 0
    while len(canary) < n_each or len(stable) < n_each:
        sid = f"s-fleet-{secrets.token_hex(4)}-{k}"
        k += 1
        side = canary if cohort_bucket("voice-assistant", "2.0.0", sid) < 5000 else stable
        if len(side) < n_each:
            side.append(sid)
    return canary, stable


def _plans(timeline_dir: Path, sid: str) -> list[dict[str, Any]]:
    lines = (timeline_dir / f"{sid}.jsonl").read_text().splitlines()
    return [json.loads(x)["record"] for x in lines if '"resolved_turn_plan"' in x]


def _signals(timeline_dir: Path, sid: str) -> list[tuple[str, str | None, str | None]]:
    out = []
    for line in (timeline_dir / f"{sid}.jsonl").read_text().splitlines():
        rec = json.loads(line)["record"]
        if "signal" in rec and rec.get("signal") != "telemetry":
            out.append((rec["signal"], rec.get("turn_id"), rec.get("reason")))
    return out


async def _converse(route: dict[str, Any], pcm: bytes,
                    on_event: Callable[[ServerEvent], None] | None = None) -> TalkResult:
    client = await LiveClient.connect(ws_url(route["endpoint"], route["session_id"]),
                                      token=route["token"], msgpack=True)
    async with client:
        return await talk(client, pcm, TalkOptions(max_wait_s=90), on_event=on_event)


def _answered(result: TalkResult) -> list[str]:
    """The turns that committed with a reply; fails with what happened otherwise."""
    done = [t.turn_id for t in result.turns.values() if t.terminal == "commit" and t.reply]
    assert done, [(t.turn_id, t.terminal, t.reason, t.transcript) for t in result.turns.values()]
    return done


def test_fleet_routes_rolls_out_refuses_bad_tokens_and_drains_on_sigterm(
    control_plane: ControlPlaneProcess, serve_process: Callable[..., ServeProcess],
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    cp = control_plane
    cp.api("POST", "/v1/pipelines", {"spec": VOICE, "filename": "v1.yaml"})
    cp.api("POST", "/v1/pipelines", {"spec": VOICE.replace("version: 1.0.0", "version: 2.0.0"),
                                     "filename": "v2.yaml"})
    cp.api("POST", "/v1/pipelines/voice-assistant/rollout",
           {"canary": "2.0.0", "percent": 50, "tenants": []})
    timelines = {name: tmp_path / name for name in REGIONS}
    runtimes = {
        name: serve_process("--control-plane", cp.url, "--api-key", ADMIN, "--runtime-id", name,
                            "--region", region, "--heartbeat-interval", "0.2",
                            "--drain-deadline", "60", "--timeline-dir", str(timelines[name]))
        for name, region in REGIONS.items()}
    for rt in runtimes.values():
        rt.wait_ready()
    listed = cp.api("GET", "/v1/runtimes")["runtimes"]
    assert sorted((r["runtime_id"], r["health"]) for r in listed) == [
        ("rt-a", "healthy"), ("rt-b", "healthy")]
    question, _ = read_wav(spoken["question"])
    (canary, next_canary), (stable, _) = _session_ids(2)

    async def two_versions_on_two_runtimes() -> tuple[dict[str, Any], dict[str, Any]]:
        first = _route(cp, "east", session_id=canary)
        second = _route(cp, "west", session_id=stable)
        results = await asyncio.gather(_converse(first, question), _converse(second, question))
        for r in results:
            assert r.ok, (r.close_code, r.close_reason)
            _answered(r)
        return first, second

    first, second = asyncio.run(two_versions_on_two_runtimes())
    for route in (first, second):  # ended: the runtime has finished the session's timeline
        _wait_status(cp, route["session_id"], "ended")
    assert (first["runtime_id"], second["runtime_id"]) == ("rt-a", "rt-b")
    assert (first["pipeline_version"], second["pipeline_version"]) == ("2.0.0", "1.0.0")
    for route in (first, second):
        plans = _plans(timelines[route["runtime_id"]], route["session_id"])
        resolution = plans[0]["snapshot_provenance"]["version_resolution_snapshot"]
        assert plans and all(
            p["snapshot_provenance"]["version_resolution_snapshot"] == resolution
            for p in plans)
        # the plans run the version the route pinned for this session ...
        assert f":pinned:{route['session_id']}:{route['pipeline_version']}@" in resolution
        # ... which the rollout's cohort chose
        cohort = "canary" if route is first else "stable"
        assert f":{cohort}:{route['pipeline_version']}" in route["version_snapshot_id"]

    # a rollback takes effect for the next session: the canary cohort is back on 1.0.0
    cp.api("POST", "/v1/pipelines/voice-assistant/rollback", {"to": "1.0.0"})
    assert _route(cp, session_id=next_canary)["pipeline_version"] == "1.0.0"

    _bad_tokens_are_refused_before_audio(cp, timelines)
    _sigterm_drains_one_runtime(cp, runtimes, timelines, question, spoken)


def _bad_tokens_are_refused_before_audio(cp: ControlPlaneProcess,
                                         timelines: dict[str, Path]) -> None:
    route = _route(cp)
    sid, rt = route["session_id"], route["runtime_id"]
    keys = cp.keys
    assert keys is not None
    claims = {"session_id": sid, "runtime_id": rt, "pipeline_name": "voice-assistant",
              "pipeline_version": route["pipeline_version"], "lease_epoch": 1, "ttl_s": 60}
    expired, _ = TokenIssuer(keys, clock=lambda: 1_000_000).issue(tenant_id="acme", **claims)
    foreign, _ = TokenIssuer(keys).issue(tenant_id="globex", **claims)

    async def refusal(token: str) -> tuple[int | None, str]:
        with pytest.raises(SessionRefusedError) as err:
            await LiveClient.connect(ws_url(route["endpoint"], sid), token=token)
        return err.value.code, err.value.reason

    got = {name: asyncio.run(refusal(token)) for name, token in (
        ("bad", "not-a-token"), ("expired", expired), ("wrong_tenant", foreign))}
    assert got["bad"][0] == 4401 and got["bad"][1].startswith("token_invalid"), got
    assert got["expired"][0] == 4401 and "expired" in got["expired"][1], got
    assert got["wrong_tenant"][0] == 4403, got
    assert got["wrong_tenant"][1].startswith("token_wrong_tenant"), got
    # refused before any audio: the session never started (no timeline, still only routed)
    assert not (timelines[rt] / f"{sid}.jsonl").exists()
    assert cp.api("GET", f"/v1/sessions/{sid}")["status"] == "routed"


def _sigterm_drains_one_runtime(cp: ControlPlaneProcess, runtimes: dict[str, ServeProcess],
                                timelines: dict[str, Path], question: bytes,
                                spoken: dict[str, Path]) -> None:
    route = _route(cp, "east")
    victim_id, other = "rt-a", "rt-b"
    assert route["runtime_id"] == victim_id
    victim = runtimes[victim_id]
    # routed to the victim before SIGTERM, connecting after it: refused, the runtime drains
    late = _route(cp, "east")
    assert late["runtime_id"] == victim_id

    async def drain() -> tuple[TalkResult, dict[str, Any]]:
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_event(ev: ServerEvent) -> None:
            if isinstance(ev, TurnEvent) and ev.state == "open" and not opened.done():
                opened.set_result(ev.turn_id)

        session = asyncio.create_task(_converse(route, question, on_event))
        await asyncio.wait_for(asyncio.shield(opened), 90)
        victim.proc.send_signal(signal.SIGTERM)  # mid-turn: the reply is yet to play
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=victim.url, timeout=10) as http:
            while not statuses or statuses[-1] == 200:
                statuses.append((await http.get("/readyz")).status_code)
            assert statuses[-1] == 503 and not session.done()
            # the control plane hears of the drain (the victim's last heartbeat) ...
            while await _health(cp, victim_id) == "healthy":  # noqa: ASYNC110 - polled API
                await asyncio.sleep(0.02)
            # ... and places a new session asking for the victim's region on the other runtime
            placed = await cp.api_async("POST", "/v1/sessions/route", {
                "tenant_id": "acme", "pipeline_name": "voice-assistant",
                "attributes": {"region": "east"}})
            with pytest.raises(SessionRefusedError) as err:
                await LiveClient.connect(ws_url(late["endpoint"], late["session_id"]),
                                         token=late["token"])
            assert err.value.code == 4503 and "draining" in err.value.reason, err.value
        return await session, placed

    result, placed = asyncio.run(drain())
    assert placed["runtime_id"] == other
    # the session mid-turn finished its turn, then closed with a clear reason
    answered = _answered(result)
    assert len(result.audio) > 16000, len(result.audio)
    assert result.close_code == 1000 and result.close_reason == "server_draining", (
        result.close_code, result.close_reason)
    code, out, err = victim.terminate()
    assert code == 0, err
    assert "draining" in out and "stopped" in out
    sig = _signals(timelines[victim_id], route["session_id"])
    assert ("commit", answered[0], None) in sig and sig[-1][0] == "ended", sig
    assert sig[-1][2] == "server_draining", sig
    assert [r["runtime_id"] for r in cp.api("GET", "/v1/runtimes")["runtimes"]] == [other]
    assert cp.api("GET", f"/v1/sessions/{route['session_id']}")["status"] == "ended"
    # a new conversation through the CLI goes to the runtime still serving
    env = dict(_env(), RSPP_API_KEY=ADMIN)
    talked = subprocess.run(
        [*CLI, "talk", "--route-via", cp.url, "--tenant", "acme", "--json",
         "--input", str(spoken["question"])],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert talked.returncode == 0, talked.stdout + talked.stderr
    events = [json.loads(x) for x in talked.stdout.splitlines() if x.startswith("{")]
    sid = next(e["session_id"] for e in events if e.get("type") == "ready")
    assert cp.api("GET", f"/v1/sessions/{sid}")["runtime_id"] == other
    assert any(e.get("type") == "reply_text" for e in events), events


def test_control_plane_down_refuses_new_sessions_and_drains_live_ones_at_lease_expiry(
    cp_serve: Callable[..., ControlPlaneServer], serve_process: Callable[..., ServeProcess],
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    """The control plane dies mid-turn: the live session finishes its turn on its frozen
    plan and closes when its lease can no longer be renewed; a session connecting while the
    control plane is down is refused with that reason (no silent fallback)."""
    url, _, cp_proc = cp_serve("sqlite", ADMIN)
    cp = ControlPlaneProcess(url)
    cp.api("POST", "/v1/pipelines", {"spec": VOICE, "filename": "v1.yaml"})
    timelines = tmp_path / "timelines"
    rt = serve_process("--control-plane", url, "--api-key", ADMIN, "--runtime-id", "rt-solo",
                       "--heartbeat-interval", "0.2", "--lease-ttl-ms", "15000",
                       "--timeline-dir", str(timelines)).wait_ready()
    live, late = _route(cp), _route(cp)
    question, _ = read_wav(spoken["question"])

    async def crash_mid_turn() -> tuple[TalkResult, SessionRefusedError]:
        opened: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_event(ev: ServerEvent) -> None:
            if isinstance(ev, TurnEvent) and ev.state == "open" and not opened.done():
                opened.set_result(ev.turn_id)

        client = await LiveClient.connect(ws_url(live["endpoint"], live["session_id"]),
                                          token=live["token"], msgpack=True)
        async with client:  # the line stays open (no `end`) until the server closes it
            session = asyncio.create_task(talk(client, question, TalkOptions(
                quiet_s=120, max_wait_s=120), on_event=on_event))
            await asyncio.wait_for(asyncio.shield(opened), 90)
            cp_proc.kill()  # the control plane crashes
            cp_proc.wait()
            with pytest.raises(SessionRefusedError) as err:
                await LiveClient.connect(ws_url(late["endpoint"], late["session_id"]),
                                         token=late["token"])
            return await session, err.value

    result, refused = asyncio.run(crash_mid_turn())
    assert refused.code == 4503 and refused.reason.startswith("control_plane_unreachable"), (
        refused.code, refused.reason)
    # readiness follows the dependency (a failed heartbeat), liveness does not
    with httpx.Client(base_url=rt.url, timeout=10) as http:
        ready = http.get("/readyz")
        while ready.status_code == 200:  # the first heartbeat after the crash
            ready = http.get("/readyz")
        assert (ready.status_code, ready.json()["status"]) == (503, "control_plane_unreachable")
        assert http.get("/healthz").status_code == 200
    _answered(result)  # the turn in flight finished on its frozen plan
    assert result.close_code == 1000, (result.close_code, result.close_reason)
    assert result.close_reason == "authority_lost:lease_expired_control_plane_unreachable"
    code, _, err = rt.terminate()  # its timelines are complete once it has exited
    assert code == 0, err
    sig = _signals(timelines, live["session_id"])
    assert sig[-1] == ("ended", None, "authority_lost:lease_expired_control_plane_unreachable")
