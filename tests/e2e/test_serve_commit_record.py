"""A runtime killed right after its client saw a commit has that commit in its timeline.

``rspp serve`` (embedded control plane, ``--timeline-dir``) runs a typed-text chat; the
client sends questions over WebSocket and, the moment it reads a turn's ``commit`` event,
the runtime process is SIGKILLed. Its timeline file must hold that turn's commit record:
the runtime writes a turn's terminal record to the file (one ``os.write``, no fsync: a
killed process cannot lose it) before the event leaves for the client (F-154, issue 17).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from rspp.client import LiveClient
from rspp.transports import TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServedChat

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "commit-record-admin-key"


@pytest.mark.parametrize("turns", [1, 3])
def test_a_commit_the_client_saw_is_in_the_killed_runtimes_timeline(
    served_chat: Callable[..., ServedChat], turns: int
) -> None:
    chat = served_chat(KEY)
    srv = chat.srv

    async def talk() -> tuple[str, list[str]]:
        target = await chat.route()
        seen: list[str] = []
        with contextlib.suppress(Exception):  # the connection dies with the runtime
            async with await LiveClient.connect(target.url, token=target.token) as client:
                await client.send_text("what is your name")
                async for ev in client.events():
                    if isinstance(ev, TurnEvent) and ev.state == "commit":
                        seen.append(ev.turn_id)
                        if len(seen) == turns:
                            srv.proc.kill()  # SIGKILL the moment the client saw it
                            break
                    if isinstance(ev, TurnEvent) and ev.state == "close":
                        await client.send_text("and what time is it")
        return target.session_id, seen

    sid, seen = asyncio.run(asyncio.wait_for(talk(), 180))
    srv.proc.communicate(timeout=30)
    assert len(seen) == turns and srv.proc.returncode == -9
    lines = [json.loads(line) for line in chat.timeline(sid).read_text().splitlines()
             if line.endswith("}")]
    commits = [ln["record"]["turn_id"] for ln in lines if ln["kind"] == "control_signal"
               and ln["record"]["signal"] == "commit"]
    assert commits == seen, (commits, seen)
