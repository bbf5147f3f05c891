"""The state contract across a move (F-155, F-157, F-158), on real live sessions in process.

Session A (a live session of the text assistant, as ``rspp serve`` builds it) checkpoints
into a durable store (SQLite file) at its turn boundaries; it is abandoned while a turn is
open, as a killed runtime would leave it. Session B is built by the next owner from the
store: turn-ephemeral state is gone, session-hot state (the conversation) and
session-durable state come back, ids continue, the open turn ends on B (T8), and an input
key A took is a duplicate on B. (The served path over real processes and PostgreSQL:
``tests/e2e/test_scaleout.py``.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rspp.contracts import ControlSignal, DecisionOutcome, SignalName
from rspp.runner._assembly import AssemblyOptions, compile_spec_file
from rspp.runner._live import open_live_session
from rspp.transports import ClientAudio, ErrorEvent, ReplyText, TurnEvent
from rspp.turns import (
    ResumePoint,
    SessionCheckpointer,
    SqliteDurableStore,
    StateManager,
    StateScope,
    resume_session,
)

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "benchmarks" / "specs" / "text_assistant.yaml"
AUDIO = ClientAudio(sample_rate=16000, output_sample_rate=16000)


class Client:
    """Reads one live connection's events in the background."""

    def __init__(self, stream: AsyncIterator[Any]) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(stream))

    async def _read(self, stream: AsyncIterator[Any]) -> None:
        async for item in stream:
            self.events.append(item)
            self._changed.set()

    async def until(self, match: Any, timeout_s: float = 60) -> Any:
        async def wait() -> Any:
            while True:
                for ev in self.events:
                    if match(ev):
                        return ev
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout_s)

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def turn(state: str, tid: str | None = None) -> Any:
    return lambda ev: isinstance(ev, TurnEvent) and ev.state == state and (
        tid is None or ev.turn_id == tid)


async def _open(store: SqliteDurableStore, epoch: int) -> tuple[Any, StateManager, Any]:
    state = StateManager("s-move", store)
    point = ResumePoint.of(await state.attach()) if epoch > 1 else None
    handle = await open_live_session(compile_spec_file(SPEC), AssemblyOptions(
        session_id="s-move", authority_epoch=epoch, state=state, enforce_budgets=False))
    return handle, state, point


@pytest.mark.timeout(120)
async def test_a_moved_session_keeps_its_conversation_ids_and_keys_and_ends_the_open_turn(
    tmp_path: Path,
) -> None:
    store = SqliteDurableStore(str(tmp_path / "state.db"))
    a, state_a, _ = await _open(store, 1)
    ckpt = SessionCheckpointer(a.core.driver, state_a, runtime_id="rt-a")
    a.core.listeners.append(ckpt.on_record)
    ckpt.start()
    durable = state_a.handle("memory", "session", StateScope.SESSION_DURABLE)
    durable.set("name", "Ada")
    turn_state = state_a.node_state("notes", "turn")
    turn_state.set("draft", "x")
    client = Client(a.connect(AUDIO))
    await a.push_text("what is your name", "q1")
    await client.until(turn("close", "s-move:turn:1"))
    assert await ckpt.flush()
    await a.push_text("tell me a joke", "q2")
    await client.until(turn("open", "s-move:turn:2"))
    assert await ckpt.flush()  # the open turn is saved: then A is abandoned (killed)
    assert ckpt.saved >= 2 and ckpt.stopped is None
    await client.aclose()
    await ckpt.aclose()
    await a.close("killed")  # (the new owner reads only the store)

    b, state_b, point = await _open(store, 2)
    try:
        assert point is not None and point.runtime_id == "rt-a"
        assert point.open_turn is not None and point.open_turn.turn_id == "s-move:turn:2"
        assert point.last_committed_turn == "s-move:turn:1"
        # declared behaviour: durable reattached, hot restored, turn-ephemeral gone
        assert state_b.handle("memory", "session", StateScope.SESSION_DURABLE).get("name") == "Ada"
        assert state_b.node_state("notes", "turn").get("draft") is None
        history = state_b.session_hot("llm").get("history")
        assert [m[0] for m in history] == ["user", "assistant"]  # type: ignore[union-attr]
        records: list[Any] = []
        b.core.listeners.append(records.append)
        interrupted = resume_session(b.core.driver, point, reason="session_moved_from:rt-a")
        assert interrupted == point.open_turn
        await b.core.session.drain()
        client = Client(b.connect(AUDIO))
        # the first events on the new connection end the interrupted turn
        await client.until(turn("close", "s-move:turn:2"))
        first = [ev for ev in client.events if isinstance(ev, TurnEvent)][:2]
        assert [(e.state, e.reason) for e in first] == [("abort", "authority_loss"),
                                                        ("close", None)]
        t8 = [(r.signal.value, r.reason, r.authority_epoch) for r in records
              if isinstance(r, ControlSignal) and r.turn_id == "s-move:turn:2"]
        assert t8 == [("deauthorized_drain", "session_moved_from:rt-a", 1),
                      ("abort", "authority_loss", 1), ("close", None, 1)]
        assert any(isinstance(r, DecisionOutcome) and r.outcome_kind.value ==
                   "deauthorized_drain" for r in records)
        # a duplicate of an input A took is dropped; the conversation continues at turn 3
        await b.push_text("tell me a joke", "q2")
        dup = await client.until(lambda ev: isinstance(ev, ErrorEvent))
        assert (dup.code, dup.field) == ("duplicate", "id")
        notice = [r for r in records if isinstance(r, ControlSignal)
                  and r.signal is SignalName.DROP_NOTICE]
        assert notice and notice[0].reason == "duplicate_idempotency_key:q2:first=s-move:input:2"
        await b.push_text("what did I ask", "q3")
        # (turn ids of the new owner carry its epoch: see the next test)
        await client.until(turn("commit", "s-move:turn:3@2"))
        reply = "".join(ev.text for ev in client.events
                        if isinstance(ev, ReplyText) and ev.turn_id == "s-move:turn:3@2")
        assert "what is your name" in reply, reply
        assert not [ev for ev in client.events if turn("open")(ev)
                    and ev.turn_id not in ("s-move:turn:3@2",)]
        await client.aclose()
    finally:
        await b.close("done")
        store.close()


@pytest.mark.timeout(120)
async def test_a_turn_opened_after_the_last_saved_checkpoint_never_gets_its_id_reused(
    tmp_path: Path,
) -> None:
    """The owner dies within milliseconds of a turn opening, before that turn's checkpoint
    lands: the checkpoint counts one turn fewer than the client saw open. The new owner's
    turn ids carry its lease epoch, so its next turn is not the one the client already
    saw (and ended itself as ``runtime_failover``)."""
    store = SqliteDurableStore(str(tmp_path / "state.db"))
    a, state_a, _ = await _open(store, 1)
    ckpt = SessionCheckpointer(a.core.driver, state_a, runtime_id="rt-a")
    a.core.listeners.append(ckpt.on_record)
    ckpt.start()
    client = Client(a.connect(AUDIO))
    await a.push_text("what is your name", "q1")
    await client.until(turn("close", "s-move:turn:1"))
    assert await ckpt.flush()
    await ckpt.aclose()  # nothing more lands: A dies just as its next turn opens
    await a.push_text("tell me a joke", "q2")
    await client.until(turn("open", "s-move:turn:2"))
    await client.aclose()
    await a.close("killed")

    b, _, point = await _open(store, 2)
    try:
        assert point is not None and point.id_counters["turn"] == 1 and point.open_turn is None
        resume_session(b.core.driver, point, reason="session_moved_from:rt-a")
        client = Client(b.connect(AUDIO))
        await b.push_text("what did I ask", "q3")
        closed = await client.until(turn("close"))
        opened = [ev.turn_id for ev in client.events if turn("open")(ev)]
        assert opened == ["s-move:turn:2@2"] and closed.turn_id == "s-move:turn:2@2"
        await client.aclose()
    finally:
        await b.close("done")

    # no checkpoint at all (A died in its first turn): the new owner's ids differ too
    empty = SqliteDurableStore(str(tmp_path / "empty.db"))
    c, _, nothing = await _open(empty, 3)
    try:
        assert nothing is None
        client = Client(c.connect(AUDIO))
        await c.push_text("hello", "q1")
        first = await client.until(turn("open"))
        assert first.turn_id == "s-move:turn:1@3"
        await client.aclose()
    finally:
        await c.close("done")
        empty.close()
        store.close()
