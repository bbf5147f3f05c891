"""A dropped client through ``rspp serve``: configurable timeouts, cleanup, audit (F-091).

``rspp serve --stall-timeout 0.3 --resume-window 1.5``: a client's network drops (the
socket aborted, no close handshake). The session goes ``disconnected``, ``stall`` after
the stall timeout, and ends ``resume_window_expired`` once the resume window passed with
no reconnect; the runtime cleans it up (its /readyz session count back to 0), reports it
ended to the control plane, which audits ``session.ended`` with the reason and runtime.
A resume window shorter than the stall timeout is refused naming the option.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import TEXT_CHAT_SPEC
from rspp.transports import TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "disconnect-e2e-admin-key"


def _signals(timeline: Path) -> list[tuple[str, str | None]]:
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    return [(ln["record"]["signal"], ln["record"].get("reason")) for ln in lines
            if ln["kind"] == "control_signal"]


def test_a_dropped_client_stalls_ends_after_the_resume_window_and_is_audited(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(TEXT_CHAT_SPEC)
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--stall-timeout", "0.3", "--resume-window", "1.5").wait_ready()
    auth = {"Authorization": f"Bearer {KEY}"}

    async def drop() -> str:
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-chat")
        client = await LiveClient.connect(target.url, token=target.token)
        await client.send_text("what is your name")
        async for ev in client.events():  # a turn of the session ran
            if isinstance(ev, TurnEvent) and ev.state == "close":
                break
        client.ws.transport.abort()  # the network drops: no close handshake
        async with httpx.AsyncClient(base_url=srv.url, headers=auth, timeout=30) as http:
            while (await http.get(f"/v1/sessions/{target.session_id}")).json()["status"] \
                    != "ended":  # noqa: ASYNC110 - the control plane's status, polled
                await asyncio.sleep(0.05)
            # ... and the runtime forgot it (cleaned up)
            while (await http.get("/readyz")).json()["sessions"] != 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return target.session_id

    sid = asyncio.run(asyncio.wait_for(drop(), 90))
    entries: list[dict[str, Any]] = httpx.get(f"{srv.url}/v1/audit", headers=auth,
                                              timeout=30).json()["entries"]
    ended = [e for e in entries if e["action"] == "session.ended" and e["subject"] == sid]
    assert len(ended) == 1, entries
    assert ended[0]["detail"] == {"reason": "resume_window_expired",
                                  "runtime_id": srv.runtime_id}, ended
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err
    sigs = _signals(timelines / f"{sid}.jsonl")
    names = [s for s, _ in sigs]
    i = names.index("disconnected")
    assert names[i:i + 2] == ["disconnected", "stall"], sigs
    assert ("stall", "no_transport_for_0.3s") in sigs, sigs
    assert sigs[-1] == ("ended", "resume_window_expired"), sigs


def test_a_resume_window_shorter_than_the_stall_timeout_is_refused() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    res = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve", "--port", "0",
         "--stall-timeout", "5", "--resume-window", "1"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--resume-window must be at least --stall-timeout" in res.stderr
