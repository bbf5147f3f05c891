"""Sessions governed by the control plane, through the runtime's real code (F-103, F-156, F-157).

A real control plane (SQLite) behind its real HTTP app, reached by the
runtime's :class:`ControlPlaneClient` over an in-process ASGI transport (the
path ``rspp serve`` uses in embedded mode); a real :class:`Runtime` registers,
verifies tokens, acquires and renews leases, and runs real offline sessions
(espeak-ng question -> pocketsphinx -> responder -> espeak-ng) on a real-time
loopback transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from rspp.contracts import ControlSignal, DecisionOutcome, ResolvedTurnPlan, SignalName
from rspp.controlplane import (
    ControlPlane,
    ControlPlaneClient,
    ControlPlaneSettings,
    CPError,
    TokenIssuer,
    TokenKeys,
    create_app,
)
from rspp.providers.offline import EspeakTTS
from rspp.server import (
    LinkOptions,
    LoopbackServedSession,
    LoopbackSessionBuilder,
    Runtime,
    RuntimeOptions,
    ServedSession,
    SessionPolicy,
    SessionRefused,
)
from rspp.testing import with_patient_budgets
from rspp.transports import LoopbackOptions

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
# generous budgets and provider timeouts: the machine running the suite may be busy, and
# served sessions enforce wall-clock budgets
VOICE = with_patient_budgets(
    (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
).replace("    type: stt\n", "    type: stt\n    timeout_ms: 20000\n").replace(
    "    type: llm\n", "    type: llm\n    timeout_ms: 20000\n").replace(
    "    type: tts\n", "    type: tts\n    timeout_ms: 20000\n")
ADMIN = "admin-key-for-governed-session-tests"
RATE = 16000


async def _say(text: str) -> bytes:
    tts = EspeakTTS(sample_rate=RATE, voice="en-us", words_per_minute=175)
    return b"".join([chunk.pcm async for chunk in tts.synthesize(text)])


@pytest.fixture(scope="module")
def question() -> bytes:
    return asyncio.run(_say("what is the weather like today"))


@dataclass
class Rig:
    cp: ControlPlane
    client: ControlPlaneClient
    runtime: Runtime


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    cp = await ControlPlane.open(ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", admin_key=ADMIN))
    app = create_app(cp)
    client = ControlPlaneClient("http://cp", ADMIN, transport=httpx.ASGITransport(app=app))
    admin = ControlPlaneClient("http://cp", ADMIN, transport=httpx.ASGITransport(app=app))
    runtime = Runtime(client, RuntimeOptions(
        link=LinkOptions(runtime_id="rt-a", endpoint="ws://127.0.0.1:1", capacity=4,
                         heartbeat_interval_s=0.2),
        sessions=SessionPolicy(lease_ttl_ms=20_000, lease_renew_ms=300)))
    await runtime.start()
    await admin.publish(VOICE, "voice_assistant.yaml")
    try:
        yield Rig(cp, admin, runtime)
    finally:
        await runtime.drain()
        await runtime.stop()
        await admin.aclose()
        await cp.close()


class Watch:
    """Records of one session, with futures for the first record matching a predicate."""

    def __init__(self) -> None:
        self.records: list[msgspec.Struct] = []
        self._waits: list[tuple[Any, asyncio.Future[msgspec.Struct]]] = []

    def __call__(self, rec: msgspec.Struct) -> None:
        self.records.append(rec)
        for pred, fut in list(self._waits):
            if not fut.done() and pred(rec):
                fut.set_result(rec)

    def when(self, pred: Any, since: int = 0) -> asyncio.Future[msgspec.Struct]:
        """The first record (from index ``since``) matching ``pred``."""
        fut: asyncio.Future[msgspec.Struct] = asyncio.get_running_loop().create_future()
        for rec in self.records[since:]:
            if pred(rec):
                fut.set_result(rec)
                return fut
        self._waits.append((pred, fut))
        return fut

    def signals(self) -> list[ControlSignal]:
        return [r for r in self.records if isinstance(r, ControlSignal)]


async def start_session(rig: Rig, pcm: bytes
                        ) -> tuple[ServedSession[Any], LoopbackServedSession, Watch, str]:
    """Route a session through the CP API, verify its token, open it on a WAV; watch it."""
    built: list[LoopbackServedSession] = []
    watch = Watch()

    def on_built(s: LoopbackServedSession) -> None:
        built.append(s)
        s.core.listeners.append(watch)

    route = await rig.client.route("acme", "voice-assistant")
    sid = route["session_id"]
    assert route["lease_epoch"] == 1
    claims = rig.runtime.sessions.verify(route["token"], sid)
    served = await rig.runtime.sessions.open(claims, LoopbackSessionBuilder(
        pcm, RATE, LoopbackOptions(real_time=True), on_built=on_built))
    return served, built[0], watch, sid


def signal(name: SignalName, turn: str | None = None) -> Any:
    return lambda r: (isinstance(r, ControlSignal) and r.signal is name
                      and (turn is None or r.turn_id == turn))


async def test_runtime_registers_and_heartbeats_into_the_routing_view(rig: Rig) -> None:
    runtimes = (await rig.client.request("GET", "/v1/runtimes"))["runtimes"]
    assert [(r["runtime_id"], r["health"], r["endpoint"]) for r in runtimes] == [
        ("rt-a", "healthy", "ws://127.0.0.1:1")]
    assert rig.runtime.ready and rig.runtime.state == "ready"


async def test_bad_expired_foreign_and_misrouted_tokens_are_refused(rig: Rig) -> None:
    route = await rig.client.route("acme", "voice-assistant")
    other = await rig.client.route("acme", "voice-assistant")
    sid = route["session_id"]
    sessions = rig.runtime.sessions
    assert sessions.verify(route["token"], sid).tenant_id == "acme"
    refusals: dict[str, str] = {}
    keys = rig.cp.token_keys
    expired, _ = TokenIssuer(keys, clock=lambda: 1_000_000).issue(
        session_id=sid, tenant_id="acme", runtime_id="rt-a", pipeline_name="voice-assistant",
        pipeline_version="1.0.0", lease_epoch=1, ttl_s=60)
    foreign, _ = TokenIssuer(keys).issue(
        session_id=sid, tenant_id="globex", runtime_id="rt-a", pipeline_name="voice-assistant",
        pipeline_version="1.0.0", lease_epoch=1, ttl_s=60)
    tampered = route["token"][:-3] + ("AAA" if not route["token"].endswith("AAA") else "BBB")
    for name, token, session in (("garbage", "not-a-token", sid), ("tampered", tampered, sid),
                                 ("expired", expired, sid),
                                 ("wrong_session", other["token"], sid)):
        with pytest.raises(SessionRefused) as err:
            sessions.verify(token, session)
        refusals[name] = err.value.code
    # signed, but for a tenant the session does not belong to: the CP record decides
    claims = sessions.verify(foreign, sid)  # the signature verifies ...
    with pytest.raises(SessionRefused) as err:  # ... but the session is not globex's
        await sessions.open(claims, LoopbackSessionBuilder(b"", RATE))
    refusals["wrong_tenant"] = err.value.code
    assert refusals == {"garbage": "token_invalid", "tampered": "token_invalid",
                        "expired": "token_invalid", "wrong_session": "token_wrong_session",
                        "wrong_tenant": "token_wrong_tenant"}
    assert not sessions.active
    scrape = rig.runtime.metrics.scrape().decode()
    assert 'rspp_sessions_refused_total{reason="token_wrong_tenant"} 1.0' in scrape


async def test_lease_rotation_mid_turn_fences_the_turn_and_the_next_turn_runs_on_the_new_epoch(
    rig: Rig, question: bytes
) -> None:
    """Rotation through the CP API while the reply plays (T8), then a second question."""
    gap = b"\x00\x00" * int(RATE * 8)  # the first reply is fenced well before the second question
    served, loop, watch, sid = await start_session(rig, question + gap + question)
    assert served.epoch == 1
    first = await asyncio.wait_for(watch.when(signal(SignalName.PLAYBACK_STARTED)), 60)
    tid = first.turn_id  # type: ignore[attr-defined]
    assert served.snapshots is not None and served.snapshots.refreshes == 0
    lease = await rig.client.rotate_lease(sid)
    assert lease.epoch == 2 and lease.holder == "rt-a"
    await asyncio.wait_for(watch.when(signal(SignalName.CLOSE, tid)), 30)
    drain_at = len(watch.records)
    try:
        second_open = await asyncio.wait_for(
            watch.when(signal(SignalName.TURN_OPEN), drain_at), 60)
    except TimeoutError:
        raise AssertionError([(r.signal.value, r.turn_id, r.reason) for r in watch.signals()
                              if r.signal.value != "telemetry"]) from None
    second = second_open.turn_id  # type: ignore[attr-defined]
    # the turn after the rotation took its snapshots (routing view included) fresh from the
    # control plane, past the client's cache (F-159)
    assert served.snapshots.refreshes == 1
    await asyncio.wait_for(watch.when(signal(SignalName.CLOSE, second)), 60)
    await served.close("test_done")
    await loop.wait_closed()

    lifecycle = [(r.signal.value, r.reason) for r in watch.signals()
                 if r.turn_id == tid and r.signal in (
                     SignalName.DEAUTHORIZED_DRAIN, SignalName.ABORT, SignalName.CLOSE,
                     SignalName.COMMIT)]
    assert lifecycle == [("deauthorized_drain", "lease_rotated"), ("abort", "authority_loss"),
                         ("close", None)]
    outcomes = [r for r in watch.records if isinstance(r, DecisionOutcome)
                and r.turn_id == tid]
    assert any(o.outcome_kind.value == "deauthorized_drain" for o in outcomes)
    transport = loop.core.transport
    assert transport.after_fence == []  # nothing of the fenced turn reached the client after it
    assert transport.turns[tid].finished == "cancelled"
    # every output record after the drain belongs to the new epoch
    late = [r for r in watch.records[drain_at:]
            if (getattr(r, "edge_id", None) or "").startswith("output.")
            and getattr(r, "authority_epoch", 2) < 2]
    assert late == []
    plans = {p.turn_id: p for p in watch.records if isinstance(p, ResolvedTurnPlan)}
    assert plans[tid].authority_epoch == 1 and plans[second].authority_epoch == 2
    assert "voice-assistant" in plans[second].snapshot_provenance.version_resolution_snapshot
    commit = [r for r in watch.signals() if r.turn_id == second and r.signal is SignalName.COMMIT]
    assert len(commit) == 1 and commit[0].authority_epoch == 2
    assert served.keeper.renewals >= 1
    # renewals went out in the runtime's batch requests (POST /v1/runtimes/{id}/leases)
    assert served.keeper.renewer is rig.runtime.sessions.link.renewer
    assert served.keeper.renewer.batches >= 1
    # so did the checkpoints (PUT /v1/runtimes/{id}/states) and the turn-start bundles
    # (POST /v1/runtimes/{id}/bundles): the second turn opened on a bundle kept fresh
    link = rig.runtime.sessions.link
    assert served.checkpoints is not None and served.checkpoints.saved >= 4
    assert link.states.batcher.batches >= 1 and link.states.batcher.calls >= 4
    assert link.bundles.batcher.batches >= 1 and link.bundles.hits >= 1
    state = await rig.client.request("GET", f"/v1/sessions/{sid}/state")
    assert (state["holder"], state["lease_epoch"]) == ("rt-a", 2)
    assert state["document"]["session"]["last_committed_turn"] == second
    assert sid not in rig.runtime.sessions.active
    assert link.bundles.tracked == 0  # the ended session's bundle is no longer refreshed
    status = await rig.client.request("GET", f"/v1/sessions/{sid}")
    assert status["status"] == "ended" and status["lease_epoch"] == 2


async def test_revoked_lease_closes_the_session_with_a_reason(rig: Rig, question: bytes) -> None:
    # a long silent tail: the input must outlast the revoke's discovery on a busy machine (with
    # 4 s the loopback input could end first and close the session normally, reason None)
    served, loop, watch, sid = await start_session(rig, question + b"\x00\x00" * RATE * 60)
    first = await asyncio.wait_for(watch.when(signal(SignalName.PLAYBACK_STARTED)), 60)
    await rig.client.rotate_lease(sid, revoke=True)
    await asyncio.wait_for(loop.wait_closed(), 30)
    assert served.close_reason == "authority_lost:lease_revoked"
    assert loop.close_reason == "authority_lost:lease_revoked"
    names = [r.signal.value for r in watch.signals() if r.turn_id == first.turn_id]  # type: ignore[attr-defined]
    assert "deauthorized_drain" in names and names[-1] == "close"


async def test_runtime_of_an_hs256_control_plane_needs_the_shared_secret(tmp_path: Path) -> None:
    """HS256 control planes never publish their secret: the runtime must be given it."""
    secret = "hs256-secret-for-the-governed-session-test"
    cp = await ControlPlane.open(ControlPlaneSettings(
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", admin_key=ADMIN,
        token_keys=TokenKeys.hs256(secret)))
    app = create_app(cp)

    def runtime(token_secret: str | None) -> Runtime:
        client = ControlPlaneClient("http://cp", ADMIN, transport=httpx.ASGITransport(app=app))
        return Runtime(client, RuntimeOptions(link=LinkOptions(
            runtime_id="rt-h", endpoint="ws://127.0.0.1:1", token_secret=token_secret)))

    blind = runtime(None)
    try:
        with pytest.raises(CPError) as err:
            await blind.start()
        assert err.value.field == "token_secret" and "--token-secret" in err.value.message
        assert not blind.ready
        sighted = runtime(secret)
        await sighted.start()
        try:
            admin = sighted.link.client
            await admin.publish(VOICE, "voice_assistant.yaml")
            route = await admin.route("acme", "voice-assistant")
            claims = sighted.sessions.verify(route["token"], route["session_id"])
            assert (claims.tenant_id, claims.runtime_id) == ("acme", "rt-h")
        finally:
            await sighted.drain()
            await sighted.stop()
    finally:
        await blind.stop()
        await cp.close()
