"""An operator starts a debug capture of a session it is not connected to (F-076).

Through ``rspp serve`` (embedded control plane): two sessions of tenant ``acme`` are
live; an operator key of ``acme`` posts ``{"seconds": 600}`` to
``/v1/sessions/{id}/debug`` of one of them, and only that session's timeline gets
debug records. Who may is the route table's (the runtime asks
``/v1/sessions/{id}/debug/authorize`` with the caller's key): no key is 401, ``acme``'s
viewer and ``globex``'s operator are 403, an unknown session 404; a bad ``seconds`` is
a 422 naming it, and a second capture while the runtime's one slot
(``--max-debug-captures``, default 1) is taken is a 409 naming it. The captured session
validates and replays with no divergence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServedChat

pytestmark = pytest.mark.e2e

KEY = "serve-operator-debug-admin"


def _debug(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("lane") == "TelemetryLane"
            and ":debug:" in r["event_id"]]


def test_an_operator_captures_one_sessions_debug_events_by_id(
    served_chat: Callable[..., ServedChat], rspp_cli: RsppCli, closed_turn: Callable[..., Any]
) -> None:
    chat = served_chat(KEY, "--record-level", "L2")
    chat.set_policy("acme", {"recording_level": "L2"})
    url = chat.srv.url

    def key(role: str, tenant: str) -> str:
        res = httpx.post(f"{url}/v1/keys", json={"role": role, "tenant_id": tenant},
                         headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert res.status_code == 201, res.text
        return str(res.json()["key"])

    operator, viewer, stranger = (key("operator", "acme"), key("viewer", "acme"),
                                  key("operator", "globex"))

    records, until, connect = chat.records, chat.until, chat.connect

    async def scenario() -> tuple[str, str, str, str, list[tuple[int, Any]]]:
        (a, sid_a), (b, sid_b) = await connect(), await connect()
        refused: list[tuple[int, Any]] = []
        async with a, b, httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def debug(sid: str, body: Any, api_key: str | None) -> httpx.Response:
                headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
                return await http.post(f"/v1/sessions/{sid}/debug", json=body,
                                       headers=headers)

            # deny by default: no key, a viewer, another tenant's operator, no such session
            for body, api_key, sid in (({"seconds": 600}, None, sid_a),
                                       ({"seconds": 600}, viewer, sid_a),
                                       ({"seconds": 600}, stranger, sid_a),
                                       ({"seconds": 600}, operator, "no-such-session"),
                                       ({"seconds": 601}, operator, sid_a),
                                       ({"secs": 5}, operator, sid_a)):
                res = await debug(sid, body, api_key)
                refused.append((res.status_code, res.json()["error"]["field"]))
            # the operator captures session A, by id, without being connected to it
            res = await debug(sid_a, {"seconds": 600}, operator)
            assert res.status_code == 200, res.text
            assert res.json()["session_id"] == sid_a
            await until(sid_a, lambda recs: any(
                r.get("reason") == "capture_on:600s" for r in _debug(recs)))
            # one capture at a time on this runtime: B's is refused (a fleet key too)
            res = await debug(sid_b, {"seconds": 60}, KEY)
            refused.append((res.status_code, res.json()["error"]["field"]))
            assert "--max-debug-captures" in res.json()["error"]["message"], res.text
            turn_a, turn_b = await asyncio.gather(closed_turn(a, "what is your name"),
                                                  closed_turn(b, "what is your name"))
            # ended early by the operator (seconds 0): the next turn records none
            res = await debug(sid_a, {"seconds": 0}, operator)
            assert res.status_code == 200, res.text
            after = await closed_turn(a, "what time is it")
            await a.end()
            await b.end()
            for sid in (sid_a, sid_b):
                await until(sid, lambda recs: any(r.get("signal") == "ended" for r in recs))
        assert turn_b
        return sid_a, sid_b, turn_a, after, refused

    sid_a, sid_b, turn_a, after, refused = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert refused == [(401, "authorization"), (403, "authorization"), (403, "tenant_id"),
                       (404, "session_id"), (422, "seconds"), (422, "secs"),
                       (409, "seconds")], refused
    debug_a = _debug(records(sid_a))
    reasons = {r["reason"] for r in debug_a if r.get("turn_id") == turn_a}
    assert {"control:turn_start", "control:turn_end"} <= reasons, reasons
    assert not [r for r in debug_a if r.get("turn_id") == after]
    # the other session, live at the same time, recorded none
    assert not _debug(records(sid_b))
    # debug records are side notes: the captured session validates and replays exactly
    rspp_cli.validates_and_replays(chat.timeline(sid_a), chat.spec)
