"""Subscribing to a served session by event type, through ``rspp serve`` (F-022).

Protocol 1.3: a client names event types in ``start.events`` and the runtime sends only
server events of those types (``audio``; ``text``: transcripts and reply text;
``control``: turn events; ``metrics``: stats; ``error``: non-fatal errors) plus the
connection's protocol (``ready``, ``epoch``, ``session_end``). ``metrics``, ``debug`` and
``error`` also bring the session's in-band records of that type as ``record`` events
(the kernel's ``SessionActor.subscriptions``; ``rspp serve --metrics-events`` records each
node's latency at every turn's end, sent with its value). Three clients talk to one text-chat
server: one subscribed to text and metrics, one to control, debug and error (it asks for
a debug capture and sends a bad message), one that names no types (a 1.2 client: every
event as before, no ``record``). A bad type name refuses the ``start``, naming the field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.client import LiveClient, SessionRefusedError, route_session
from rspp.transports import (
    ErrorEvent,
    RecordEvent,
    ReplyText,
    ServerEvent,
    SessionEnd,
    Stats,
    Transcript,
    TurnEvent,
)

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-event-types-admin-key"


async def _session(url: str, events: Sequence[str] | None, *, debug: bool = False,
                   bad: bool = False) -> list[ServerEvent]:
    """One session of one typed turn; every event the client got, until the close."""
    target = await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name="text-chat")
    got: list[ServerEvent] = []
    async with await LiveClient.connect(target.url, token=target.token, events=events) as c:
        if debug:
            await c.capture_debug(60)
        if bad:
            await c.send_text("")  # refused: an empty text (`error`, field `text`)
        await c.send_text("what is your name")
        # the turn is over once its reply text is final (text) or its turn closed (control)
        async for ev in c.events():
            got.append(ev)
            if (isinstance(ev, ReplyText) and ev.final) or \
                    (isinstance(ev, TurnEvent) and ev.state == "close"):
                break
        await c.end()
        got += [ev async for ev in c.events()]
    return got


def _types(events: list[ServerEvent]) -> set[str]:
    return {type(e).__name__ for e in events}


def test_a_client_gets_only_the_event_types_it_subscribed_to(
    serve_process: Callable[..., ServeProcess], tmp_path: Path, text_chat_spec: str
) -> None:
    spec = tmp_path / "text_chat.yaml"
    spec.write_text(text_chat_spec)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--metrics-events").wait_ready()

    async def scenario() -> tuple[list[ServerEvent], ...]:
        text = await _session(srv.url, ["text", "metrics"])
        control = await _session(srv.url, ["control", "debug", "error"], debug=True, bad=True)
        everything = await _session(srv.url, None, bad=True)
        with pytest.raises(SessionRefusedError) as refused:
            await _session(srv.url, ["text", "telepathy"])
        assert refused.value.code == 4400 and "events" in refused.value.reason, refused.value
        return text, control, everything

    text, control, everything = asyncio.run(asyncio.wait_for(scenario(), 120))

    # text + metrics: the reply text and stats, metrics records; no turn events, no errors
    assert _types(text) <= {"EpochEvent", "ReplyText", "Transcript", "Stats", "RecordEvent",
                            "SessionEnd"}, _types(text)
    (final,) = [e for e in text if isinstance(e, ReplyText) and e.final]
    assert final.text
    assert any(isinstance(e, Stats) for e in text)  # sent before session_end
    records = [e for e in text if isinstance(e, RecordEvent)]
    assert records and {e.event_type for e in records} == {"metrics"}
    assert all(e.record["lane"] == "TelemetryLane" for e in records)
    # --metrics-events: each node's latency at the turn's end, with its value
    values = [e.payload for e in records if e.payload is not None]
    assert any(str(p.get("name", "")).startswith("node_latency") for p in values), values
    assert isinstance(text[-1], SessionEnd)

    # control + debug + error: the turn's events, the refusal, the captured debug records
    assert _types(control) <= {"EpochEvent", "TurnEvent", "ErrorEvent", "RecordEvent",
                               "SessionEnd"}, _types(control)
    states = [e.state for e in control if isinstance(e, TurnEvent)]
    assert states[:1] == ["open"] and states[-2:] == ["commit", "close"], states
    (error,) = [e for e in control if isinstance(e, ErrorEvent)]
    assert (error.field, error.fatal) == ("text", False), error
    debug = [e.record["reason"] for e in control
             if isinstance(e, RecordEvent) and e.event_type == "debug"]
    assert "capture_on:60s" in debug and "control:turn_start" in debug, debug
    assert {e.event_type for e in control if isinstance(e, RecordEvent)} <= {"debug", "error"}

    # no `events` (a 1.2 client): every event type as before, and no `record` event
    kinds = _types(everything)
    assert {"ReplyText", "TurnEvent", "ErrorEvent", "Stats", "SessionEnd"} <= kinds, kinds
    assert "RecordEvent" not in kinds
    assert not [e for e in everything if isinstance(e, Transcript) and e.turn_id is None]
