"""Sessions of one runtime share provider HTTP connections (F-105).

``rspp serve`` of a text chat on the OpenAI adapter, against the OpenAI-compatible fake
(:class:`~rspp.testing.fakes.FakeProviderServers`), which notes the peer address of
every request: one per accepted TCP connection. Two sessions take three turns each,
one after the other: every reply arrives, on one connection (a client per session
would open one per session); then a turn of each at once (two connections at most).
Cancelling one session's request (a barge-in interrupt while its stream is open) does
not break the other session's stream on the same endpoint: its turn completes with
its reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient, route_session
from rspp.testing.fakes import Fault
from rspp.transports import TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

KEY = "shared-http-admin-key"
TURNS = 3


def test_two_sessions_share_the_providers_connections(
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    fake_providers: FakeProviderServers, openai_chat_spec: Callable[[str], str],
    text_turn: Callable[..., Any],
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(openai_chat_spec("shared-chat"))
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY).wait_ready()
    fake = fake_providers.openai

    async def connect() -> LiveClient:
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="shared-chat")
        return await LiveClient.connect(target.url, token=target.token)

    async def scenario() -> tuple[list[str], list[str], int, str]:
        a, b = await connect(), await connect()
        async with a, b:
            # the sessions take turns one after the other: one connection serves both
            replies_a, replies_b = [], []
            for i in range(TURNS):
                replies_a.append(await text_turn(a, f"question {i} from a"))
                replies_b.append(await text_turn(b, f"question {i} from b"))
            alternating = fake.connections
            # both at once: two connections at most, whichever session opened them
            await asyncio.gather(text_turn(a, "at once from a"), text_turn(b, "at once from b"))
            # a's next request stalls mid-stream, b asks meanwhile; a is interrupted (its
            # request cancelled): b's stream goes on and its turn closes with the reply
            fake.faults.push(Fault("stall", seconds=600))
            before = len(fake.requests)
            await a.send_text("a question that stalls")
            while len(fake.requests) == before:  # noqa: ASYNC110 (the fake's own record)
                await asyncio.sleep(0.02)
            answer = asyncio.ensure_future(text_turn(b, "b asks while a stalls"))
            await a.interrupt()
            async for ev in a.events():
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    break
            after = await answer
            await a.end()
            await b.end()
        return replies_a, replies_b, alternating, after

    replies_a, replies_b, alternating, after = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert [r for r in replies_a if "from a" in r] == replies_a and len(replies_a) == TURNS
    assert [r for r in replies_b if "from b" in r] == replies_b and len(replies_b) == TURNS
    assert "b asks while a stalls" in after, after
    assert len(fake.requests) == 2 * TURNS + 4, len(fake.requests)
    # shared: the alternating turns of two sessions came on one connection (a client per
    # session opens one per session), and all the turns on fewer than sessions x turns
    assert alternating == 1, alternating
    assert fake.connections < 2 * TURNS, fake.peers
