"""Failure matrix row "admission overload": more sessions than the tenant's quota.

``rspp serve`` (embedded control plane) and the real client: the operator sets tenant
``acme``'s admission quota to one concurrent session. While one session is talking, a
second route request is rejected before any runtime work (429, a ``reject``
DecisionOutcome recorded for the tenant, no session created); the admitted session is
untouched and commits its turn; once it ends, a new session is admitted again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from .conftest import (
    Embedded,
    ask_first_question,
    assert_lifecycles,
    assert_valid,
    session_timeline,
    turn_event,
)


async def test_admission_overload_rejects_beyond_the_quota_and_the_admitted_session_is_unharmed(
    embedded: Embedded, question: tuple[bytes, Path], tmp_path: Path
) -> None:
    srv, api = embedded.srv, embedded.api
    await api.call("POST", "/v1/configs/admission/acme",
                   {"body": {"max_concurrent_sessions": 1}})
    route, talker, opened = await ask_first_question(api, question[0])
    sid = route["session_id"]
    refused = await api.http.post("/v1/sessions/route",
                                  json={"tenant_id": "acme", "pipeline_name": "voice-assistant"})
    assert refused.status_code == 429, refused.text
    assert "max_concurrent_sessions" in refused.text or "quota" in refused.text, refused.text
    other = await api.call("POST", "/v1/sessions/route",  # another tenant is not affected
                           {"tenant_id": "globex", "pipeline_name": "voice-assistant"})
    await talker.until(turn_event("commit", opened.turn_id))
    await talker.finish()

    outcomes = (await api.call("GET", "/v1/tenants/acme/outcomes"))["outcomes"]
    kinds = [o["outcome_kind"] for o in outcomes]
    assert kinds.count("reject") == 1 and "admit" in kinds, kinds
    lines = await session_timeline(tmp_path, sid)
    assert assert_lifecycles(lines)[opened.turn_id] == [
        ("turn_open", None), ("commit", None), ("close", None)]
    assert_valid(tmp_path / "timelines" / f"{sid}.jsonl")
    async with asyncio.timeout(30):  # the runtime reports the session ended
        while True:
            if (await api.call("GET", f"/v1/sessions/{sid}"))["status"] == "ended":
                break
            await asyncio.sleep(0.05)
    again = await api.call("POST", "/v1/sessions/route",
                           {"tenant_id": "acme", "pipeline_name": "voice-assistant"})
    assert again["session_id"] not in (sid, other["session_id"])
    assert await srv.stop() == 0
