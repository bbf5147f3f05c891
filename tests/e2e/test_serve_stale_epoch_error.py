"""A stale lease epoch in a served session is an error of the taxonomy too (F-131).

``rspp serve`` runs a text chat; its session takes a turn at lease epoch 1, then the
control plane rotates the session's lease in place (epoch 2: ``lease_rotated`` in the
timeline). The client's old token (epoch 1) can no longer connect: the runtime refuses it
(close 4409, ``stale_epoch_reject``) and the session's timeline records the T12
``stale_epoch_reject`` signal (no transition) with, at the same sequence, an ``error``
record of code ``authority_epoch_mismatch``; ``rspp timeline errors`` reports it with the
code's deterministic default action (``reject``, not retryable). The first client left
without ``end``: a second later the session records a ``stall``. ``rspp replay`` of that
served timeline refuses the recorded reconnect again at its place (signal, outcome and
error record) and reproduces the stall after it: no divergence but timing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, SessionRefusedError, route_session

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-stale-epoch-admin-key"


def _records(path: Path) -> list[dict[str, Any]]:
    """The timeline's records so far (the server appends to it asynchronously)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(x)["record"] for x in lines if x.endswith("}")]


async def _recorded(path: Path, signal: str) -> None:
    while signal not in {r.get("signal") for r in _records(path)}:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def test_a_stale_epoch_leaves_an_authority_epoch_mismatch_error_record(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str,
    text_turn: Callable[..., Any], rspp_cli: RsppCli,
) -> None:
    spec, timelines = tmp_path / "chat.yaml", tmp_path / "timelines"
    spec.write_text(text_chat_spec)
    admin = {"Authorization": f"Bearer {KEY}"}
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--timeline-dir", str(timelines), "--record-level", "L2",
                        "--api-key", KEY,
                        # the first client leaves without `end`: the session stalls a
                        # second later (the test waits for it) and stays resumable
                        "--stall-timeout", "1", "--resume-window", "600").wait_ready()
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})

    async def scenario() -> tuple[str, SessionRefusedError]:
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-chat")
        async with await LiveClient.connect(target.url, token=target.token) as client:
            sid = client.ready.session_id
            assert client.ready.lease_epoch == 1
            assert await text_turn(client, "what is your name")
            async with httpx.AsyncClient(timeout=60) as http:
                rotated = await http.post(f"{srv.url}/v1/leases/{sid}/rotate", headers=admin)
            assert rotated.status_code == 200, rotated.text
            await _recorded(timelines / f"{sid}.jsonl", "lease_rotated")
        with pytest.raises(SessionRefusedError) as refused:  # the epoch-1 token, again
            await LiveClient.connect(target.url, token=target.token)
        await _recorded(timelines / f"{sid}.jsonl", "stale_epoch_reject")
        await _recorded(timelines / f"{sid}.jsonl", "stall")  # the last record we wait for
        return sid, refused.value

    sid, refused = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert refused.code == 4409 and "stale_epoch_reject" in refused.reason, refused
    timeline = timelines / f"{sid}.jsonl"
    records = _records(timeline)
    (reject,) = [r for r in records if r.get("signal") == "stale_epoch_reject"]
    assert reject["reason"] == "stale_epoch:1<2"
    errors = [r for r in records if r.get("lane") == "TelemetryLane"
              and ":error:" in r["event_id"]]
    assert [(e["reason"], e["runtime_sequence"]) for e in errors] == [
        ("authority_epoch_mismatch", reject["runtime_sequence"])]
    # no transition: the turn before committed and nothing aborted on it
    assert not [r for r in records if r.get("signal") == "abort"]

    out = rspp_cli("timeline", "errors", str(timeline), "--json")
    assert out.returncode == 1, out.stderr  # exit 1: there are error records
    (group,) = json.loads(out.stdout)["errors"]
    assert (group["error_code"], group["default_action"], group["retryable"],
            group["count"]) == ("authority_epoch_mismatch", "reject", False, 1), group
    valid = rspp_cli("contracts", "validate", str(timeline))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    # the replay refuses the recorded reconnect again at its place and stalls after it
    report, replayed = timeline.with_suffix(".replay.json"), tmp_path / "replayed.jsonl"
    replay = rspp_cli("replay", str(timeline), "--spec", str(spec), "--report", str(report),
                      "--timeline-out", str(replayed))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    doc = json.loads(report.read_text())
    assert all(n == 0 for c, n in doc["divergences"].items() if c != "TIMING"), doc["findings"]
    again = _records(replayed)
    assert [(r["signal"], r["reason"], r["authority_epoch"]) for r in again
            if r.get("signal") in ("stale_epoch_reject", "stall")] == [
        (r["signal"], r["reason"], r["authority_epoch"]) for r in records
        if r.get("signal") in ("stale_epoch_reject", "stall")]
    (reject_again,) = [r for r in again if r.get("signal") == "stale_epoch_reject"]
    assert [e["runtime_sequence"] for e in again if e.get("lane") == "TelemetryLane"
            and e.get("reason") == "authority_epoch_mismatch"] == [
        reject_again["runtime_sequence"]]

