"""A served session resumes with one control-plane request, or the separate ones (issue 17).

A real control plane (SQLite) behind its real HTTP app; a real :class:`Runtime` reached
over an in-process ASGI transport (``rspp serve``'s embedded path) that records the
requests it sends. A session routed to another runtime saved a checkpoint there and was
migrated to this runtime (lease epoch 2): its start is one ``POST /v1/sessions/{id}/start``
(lease, checkpoint take-over, migration markers and turn-start bundle together). An older
control plane without that route (404 naming the path) gets today's separate requests and
the session resumes the same way; the runtime asks it that way from then on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from rspp.contracts import ControlSignal, SignalName
from rspp.controlplane import ControlPlane, create_app
from rspp.server import LoopbackSessionBuilder, SessionPolicy
from rspp.server._factory import GovernedFactory
from rspp.testing import with_patient_budgets
from rspp.transports import ClientAudio, SessionHub

if TYPE_CHECKING:
    from tests.integration.server.conftest import PlaneRig

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
VOICE = with_patient_budgets((REPO / "pipelines" / "examples" / "voice_assistant.yaml")
                             .read_text())
ADMIN = "admin-key-for-session-start-call"
RATE = 16000
DOC: dict[str, Any] = {"schema": "rspp.session_state/v1",
                       "hot": {"llm/history": [["user", "hello"], ["assistant", "hi"]]},
                       "durable": {"memory/name": "Ada"},
                       "session": {"runtime_id": "rt-old", "turn_seq": 3,
                                   "last_committed_turn": "s:turn:3"}}


class Requests:
    """The runtime's requests to the control plane, recorded; ``older``: the app answers
    the session start route as a control plane without it does (404 naming the path)."""

    def __init__(self, app: ASGIApp, *, older: bool) -> None:
        self.app = app
        self.older = older
        self.seen: list[tuple[str, str]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
            if self.older and scope["path"].endswith("/start"):
                body = (b'{"error":{"code":"not_found","message":"no route POST '
                        + scope["path"].encode() + b'","field":"path"}}')
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def of(self, sid: str) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.seen if sid in p]


@pytest.fixture(params=[False, True], ids=["start-route", "older-control-plane"])
async def plane(request: pytest.FixtureRequest, plane_rig: PlaneRig
                ) -> tuple[ControlPlane, Requests]:
    cp = await plane_rig.plane(ADMIN)
    return cp, Requests(create_app(cp), older=request.param)


async def test_a_resumed_session_starts_with_one_request_or_falls_back_to_separate_ones(
    plane: tuple[ControlPlane, Requests], plane_rig: PlaneRig,
) -> None:
    cp, requests = plane
    admin = plane_rig.client(cp, ADMIN)
    await admin.publish(VOICE, "voice_assistant.yaml")
    await admin.register_runtime("rt-old", "ws://rt-old")
    await admin.heartbeat("rt-old", health="healthy", load=0)
    sid = (await admin.route("acme", "voice-assistant"))["session_id"]
    doc = {**DOC, "session": {**DOC["session"], "last_committed_turn": f"{sid}:turn:3"}}
    await admin.request("PUT", f"/v1/sessions/{sid}/state", json={
        "runtime_id": "rt-old", "lease_epoch": 1, "expected_version": 0, "document": doc})
    runtime = await plane_rig.runtime(plane_rig.client(requests, ADMIN),
                                      SessionPolicy(lease_ttl_ms=20_000))
    moved = await admin.migrate(sid, "rt-a")
    assert moved.epoch == 2
    token = (await admin.request("POST", f"/v1/sessions/{sid}/token",
                                 json={"tenant_id": "acme"}))["token"]
    claims = runtime.sessions.verify(token, sid)
    served = await runtime.sessions.open(claims, LoopbackSessionBuilder(
        b"\x00\x00" * RATE * 30, RATE))
    try:
        assert served.epoch == 2 and served.keeper.epoch == 2
        assert served.resumed is not None
        assert served.resumed.last_committed_turn == f"{sid}:turn:3"
        assert served.resumed_from_epoch == 1  # the migration markers were recorded
        state = served.checkpoints.state if served.checkpoints else None
        assert state is not None and state.version == 1
        assert state.session_hot("llm").get("history") == [["user", "hello"],
                                                            ["assistant", "hi"]]
        markers = [item.record.signal for item in served.core.recorder.peek(10_000)
                   if isinstance(item.record, ControlSignal)]
        assert SignalName.MIGRATION_START in markers
        # (the session's "running" report goes out in the background, after its start)
        starts = [r for r in requests.of(sid) if not r[1].endswith("/status")]
        if requests.older:
            assert ("POST", f"/v1/sessions/{sid}/start") in starts
            assert {("GET", f"/v1/sessions/{sid}"), ("POST", f"/v1/leases/{sid}/acquire"),
                    ("GET", f"/v1/sessions/{sid}/state"),
                    ("GET", f"/v1/sessions/{sid}/signals")} <= set(starts)
            assert runtime.sessions.link.start_in_one is False
        else:
            assert starts == [("POST", f"/v1/sessions/{sid}/start")]
            assert runtime.sessions.link.start_in_one is True
        # taken over: the previous holder can no longer write its checkpoint
        stored = await admin.request("GET", f"/v1/sessions/{sid}/state")
        assert stored["taken_epoch"] == 2
    finally:
        await served.close("test_done")


async def test_a_session_back_on_a_runtime_it_left_keeps_its_earlier_timeline(
    tmp_path: Path, plane_rig: PlaneRig,
) -> None:
    """Moved away and back (epoch 1 here, 2 elsewhere, 3 here again): the timeline of its
    first run here is kept as ``<sid>.1.jsonl``, not overwritten by the second."""
    cp = await plane_rig.plane(ADMIN)
    admin = plane_rig.client(cp, ADMIN)
    timelines = tmp_path / "timelines"
    runtime = await plane_rig.runtime(plane_rig.client(cp, ADMIN), SessionPolicy(
        lease_ttl_ms=20_000, lease_renew_ms=200, timeline_dir=timelines))
    await admin.publish(VOICE, "voice_assistant.yaml")
    sid = (await admin.route("acme", "voice-assistant"))["session_id"]
    await admin.register_runtime("rt-old", "ws://rt-old")
    await admin.heartbeat("rt-old", health="healthy", load=0)

    async def open_here() -> Any:
        token = (await admin.request("POST", f"/v1/sessions/{sid}/token",
                                     json={"tenant_id": "acme"}))["token"]
        return await runtime.sessions.open(runtime.sessions.verify(token, sid),
                                           LoopbackSessionBuilder(
                                               b"\x00\x00" * RATE * 60, RATE))

    first = await open_here()
    assert first.epoch == 1
    # rt-a learns of the hand-off at its next renewal, releases the lease and closes it
    await admin.migrate(sid, "rt-old")
    await first.built.wait_closed()
    assert first.close_reason == "handed_off:rt-old" and first.handed_off
    await admin.migrate(sid, "rt-a")
    second = await open_here()
    try:
        assert second.epoch == 3
    finally:
        await second.close("test_done")
    await second.built.wait_closed()
    kept = (timelines / f"{sid}.1.jsonl").read_text()
    again = (timelines / f"{sid}.jsonl").read_text()
    epoch_1 = re.compile(r'"authority_epoch":1[,}]')
    assert epoch_1.search(kept)  # the first run's records, kept
    assert not epoch_1.search(again) and '"signal":"migration_start"' in again


async def test_a_reconnect_with_a_newer_epoch_replaces_the_copy_still_here(
    plane_rig: PlaneRig,
) -> None:
    """Moved away and back while this runtime's copy did not notice (a paused runtime: its
    keeper has not renewed since; epoch 1 here, 2 elsewhere, 3 here again): the client's
    reconnect with the epoch-3 token does not resume the epoch-1 copy (it would only learn
    of its loss at its next renewal, and the client would have to come back again). The
    copy is fenced and dropped at once, and a new copy opens at epoch 3, through the
    WebSocket endpoint's own path (token verifier + session hub)."""
    cp = await plane_rig.plane(ADMIN)
    admin = plane_rig.client(cp, ADMIN)
    # the copy does not renew during the test: it cannot learn of the move by itself.
    # Keepers renew on a shared tick (the monotonic clock's multiples of the period), not
    # a period after the session opened: a renewal may come at any moment, so the period
    # is long enough (2 h) that one inside the test's second is not a one-in-300 chance
    runtime = await plane_rig.runtime(plane_rig.client(cp, ADMIN), SessionPolicy(
        lease_ttl_ms=14_400_000, lease_renew_ms=7_200_000))
    hub = SessionHub(GovernedFactory(runtime.sessions))
    await admin.publish(VOICE, "voice_assistant.yaml")
    sid = (await admin.route("acme", "voice-assistant"))["session_id"]
    await admin.register_runtime("rt-old", "ws://rt-old")
    await admin.heartbeat("rt-old", health="healthy", load=0)

    async def connect() -> tuple[Any, bool]:
        token = (await admin.request("POST", f"/v1/sessions/{sid}/token",
                                     json={"tenant_id": "acme"}))["token"]
        grant = await hub.factory.verify(token, sid)
        opened = await hub.acquire(sid, grant, ClientAudio())
        hub.release(sid)  # the connection ends at once: only the copies matter here
        return opened

    first, resumed = await connect()
    assert not resumed
    old = runtime.sessions.active[sid]
    assert old.epoch == 1
    # away and back, at once (the copy here is as good as paused: it does not answer)
    await admin.migrate(sid, "rt-old", force=True)
    await admin.migrate(sid, "rt-a", force=True)
    second, resumed = await connect()
    assert not resumed and second is not first, "the epoch-1 copy was resumed"
    assert first.closed and old.close_reason == "authority_lost:superseded_by_epoch:3"
    assert old.keeper.output_gate() is None  # nothing of the old copy leaves any more
    new = runtime.sessions.active[sid]
    assert new is not old and new.epoch == 3
    status = await admin.request("GET", f"/v1/sessions/{sid}")
    assert status["status"] != "ended" and status["lease_epoch"] == 3
    await second.close("test_done")
