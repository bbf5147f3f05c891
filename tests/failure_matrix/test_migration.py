"""Failure matrix row "migration": a live session moves to another runtime.

``rspp cp serve`` beside two ``rspp serve --control-plane`` runtimes, and the real
client: after the first turn commits on runtime A, the operator migrates the session
to runtime B through the control-plane API. The control plane records
``migration_start``, the lease rotation to B and ``migration_finish`` (F-157) once A
released the lease (a two-phase hand-off: A learns it at its next renewal, ends its
output and releases), and A's session closes naming B (``handed_off:<B>``); the client takes a
new token
for the same session id, connects to B and is answered at the new epoch. Nothing
is lost: each turn has one terminal and a close on the runtime that ran it, and
both runtimes' timelines satisfy the contract.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rspp.client import LiveClient, session_url
from rspp.controlplane._server import free_port
from rspp.testing import with_patient_budgets

from .conftest import (
    ADMIN,
    VOICE,
    Talker,
    assert_lifecycles,
    assert_valid,
    open_session,
    serve,
    session_timeline,
    signals,
    turn_event,
)

# Three processes (CP and two runtimes) start, import the offline engines and serve two spoken
# turns: 50-90 s on a 2-core machine under load, so the default 120 s is too close.
pytestmark = pytest.mark.timeout(300)


async def test_migration_moves_the_session_with_markers_and_the_client_continues_on_the_target(
    launch: Any, cp_api: Any, question: tuple[bytes, Path], tmp_path: Path
) -> None:
    port = free_port()
    cp = await launch("cp", "serve", "--db", str(tmp_path / "cp.db"), "--port", str(port),
                      "--admin-key", ADMIN)
    await cp.wait_banner("rspp control plane on")
    cp_url = f"http://127.0.0.1:{port}"
    api = cp_api(cp_url)
    await api.call("GET", "/v1/pipelines")  # answering
    await api.call("POST", "/v1/pipelines",
                   {"spec": with_patient_budgets(VOICE.read_text())})
    names = ("rt-a", "rt-b")  # started side by side; short leases: a loss shows within 1 s
    started = await asyncio.gather(*(
        serve(launch, tmp_path / name, "--control-plane", cp_url, "--runtime-id", name,
              "--heartbeat-interval", "0.2", "--lease-ttl-ms", "3000") for name in names))
    runtimes = dict(zip(names, started, strict=True))
    route, talker = await open_session(api, question[0])
    sid, source = route["session_id"], route["runtime_id"]
    target = next(name for name in runtimes if name != source)
    talker.say()
    first = await talker.until(turn_event("open"))
    await talker.until(turn_event("commit", first.turn_id))
    moved = await api.call("POST", f"/v1/sessions/{sid}/migrate", {"target": target})
    assert moved["to_runtime"] == target and moved["epoch"] == 2, moved
    await talker.closed_by_server()  # the source closes the session it handed over
    assert talker.client.close_reason == f"handed_off:{target}", talker.client.close_reason
    token = (await api.call("POST", f"/v1/sessions/{sid}/token", {"tenant_id": "acme"}))["token"]
    endpoint = runtimes[target].url
    client = await LiveClient.connect(session_url(endpoint, sid), token=token)
    assert client.ready.session_id == sid  # identity continuity
    talker = Talker(client, question[0])
    talker.say()
    second = await talker.until(turn_event("open"))
    await talker.until(turn_event("commit", second.turn_id))
    await talker.finish()

    marks = [s["signal"] for s in (await api.call("GET", f"/v1/sessions/{sid}/signals"))[
        "signals"] if s["signal"] in ("migration_start", "lease_rotated", "migration_finish")]
    start = marks.index("migration_start")  # (a busy machine may add lease renewals/expiries)
    assert marks[start:start + 3] == ["migration_start", "lease_rotated", "migration_finish"], marks
    before = await session_timeline(tmp_path / source, sid)
    after = await session_timeline(tmp_path / target, sid)
    assert assert_lifecycles(before)[first.turn_id] == [
        ("turn_open", None), ("commit", None), ("close", None)]
    assert assert_lifecycles(after)[second.turn_id] == [
        ("turn_open", None), ("commit", None), ("close", None)]
    assert [s["authority_epoch"] for s in signals(after, "turn_open")] == [2]
    assert all(s["authority_epoch"] == 1 for s in signals(before, "turn_open"))
    for name in (source, target):
        assert_valid(tmp_path / name / "timelines" / f"{sid}.jsonl")
    status = await api.call("GET", f"/v1/sessions/{sid}")
    assert status["runtime_id"] == target and status["lease_epoch"] == 2
    for srv in runtimes.values():
        assert await srv.stop() == 0
