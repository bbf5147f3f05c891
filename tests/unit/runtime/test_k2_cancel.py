"""Cancellation scopes, egress fence, commit point, grace window and propagation.

F-025, F-033..F-041, F-175. Tasks are real asyncio tasks on a VirtualClock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import CancelScopeKind
from rspp.kernel._clock import VirtualClock
from rspp.kernel._identity import Correlation, RecordStamp
from rspp.kernel._timebase import Timebase
from rspp.turns._cancel import (
    CancelError,
    CancelMode,
    CancelReason,
    CancelScopeTree,
    propagate_cancel,
)

pytestmark = pytest.mark.unit


def _tree(grace_ms: int = 75) -> tuple[CancelScopeTree, VirtualClock]:
    clock = VirtualClock(auto_advance=False)
    stamp = RecordStamp(Correlation("t", "s1", "pv"), Timebase(clock))
    return CancelScopeTree("s1", clock, grace_ms=grace_ms, stamp=stamp), clock


def test_tree_nesting_is_enforced() -> None:
    tree, _ = _tree()
    turn = tree.open(CancelScopeKind.TURN, "t1")
    node = tree.open(CancelScopeKind.NODE, "t1/tts", turn)
    tree.open(CancelScopeKind.PROVIDER_INVOCATION, "t1/tts/pi1", node)
    with pytest.raises(CancelError, match="cannot nest under"):
        tree.open(CancelScopeKind.NODE, "bad", None)
    with pytest.raises(CancelError, match="already exists"):
        tree.open(CancelScopeKind.TURN, "t1")
    with pytest.raises(CancelError, match="grace_ms"):
        CancelScopeTree("x", VirtualClock(), grace_ms=-1)


async def test_fence_blocks_every_output_after_acceptance_and_keeps_commit_point() -> None:
    tree, _ = _tree()
    turn = tree.open(CancelScopeKind.TURN, "t1")
    tts = tree.open(CancelScopeKind.NODE, "t1/tts", turn)
    other_turn = tree.open(CancelScopeKind.TURN, "t2")
    queued = list(range(10))

    def flush() -> int:
        n = len(queued)
        queued.clear()
        return n

    tts.on_flush(flush)
    for pos in range(3):  # baseline: output accepted and played before cancel
        assert tree.fence.admit(tts)
        tree.fence.mark_played(tts, pos + 1)
    lat = tree.cancel(turn, CancelReason.BARGE_IN)
    assert queued == []  # queued output of the scope flushed (F-038)
    assert [tree.fence.admit(tts) for _ in range(5)] == [False] * 5  # F-175: zero after fence
    assert tree.fence.blocked == {"t1/tts": 5}
    assert tree.fence.commit_point(tts) == 3  # played audio is not retracted (F-039)
    assert tree.fence.admit(other_turn)  # unaffected scope keeps flowing
    assert lat.fence_applied_ns >= lat.accepted_ns
    assert tts.cancelled and tts.reason == "barge_in"
    with pytest.raises(asyncio.CancelledError):
        tts.raise_if_cancelled()


async def test_hard_cancel_stops_now_soft_finishes_chunk_then_forced_after_grace() -> None:
    tree, clock = _tree(grace_ms=75)
    turn = tree.open(CancelScopeKind.TURN, "t1")
    hard = tree.open(CancelScopeKind.NODE, "hard", turn, CancelMode.HARD)
    soft = tree.open(CancelScopeKind.NODE, "soft", turn, CancelMode.SOFT)
    stubborn = tree.open(CancelScopeKind.NODE, "stubborn", turn, CancelMode.SOFT)
    emitted: dict[str, list[int]] = {"hard": [], "soft": [], "stubborn": []}
    chunk_started = asyncio.Event()

    async def cooperative(name: str, token: Any) -> None:
        for i in range(100):
            emitted[name].append(i)
            if i == 2:
                chunk_started.set()
            await clock.sleep(0.01)  # one 10 ms chunk
            if token.cancelled:  # cooperative check (F-036) after the in-flight chunk
                token.acknowledge()
                return

    async def ignores_cancel() -> None:
        while True:
            await clock.sleep(0.01)

    tasks: dict[str, asyncio.Task[Any]] = {
        "hard": asyncio.create_task(cooperative("hard", hard)),
        "soft": asyncio.create_task(cooperative("soft", soft)),
        "stubborn": asyncio.create_task(ignores_cancel()),
    }
    for name, t in tasks.items():
        {"hard": hard, "soft": soft, "stubborn": stubborn}[name].register_task(t)
    for _ in range(2):
        await asyncio.sleep(0)
        clock.advance(10)
    await chunk_started.wait()  # every task is now inside its third 10 ms chunk
    before = {k: len(v) for k, v in emitted.items()}
    lat = tree.cancel(turn, CancelReason.USER_CANCEL)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert tasks["hard"].cancelled()  # hard: stopped immediately, no further chunk
    assert len(emitted["hard"]) == before["hard"]
    clock.advance(10)  # soft finishes its in-flight chunk and returns
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert tasks["soft"].done() and not tasks["soft"].cancelled()
    assert len(emitted["soft"]) == before["soft"]
    assert not tasks["stubborn"].done()
    clock.advance(75)  # grace window elapses -> forced termination (F-037)
    await tree.aclose()
    await asyncio.sleep(0)
    assert tasks["stubborn"].cancelled()
    assert lat.forced == ["stubborn"] and tree.degraded
    assert set(lat.node_stopped_ns) == {"hard", "soft", "stubborn"}
    assert lat.node_ms()["hard"] == 0.0 and lat.node_ms()["soft"] == 10.0
    assert lat.node_ms()["stubborn"] == 85.0 and lat.end_to_end_ms == 85.0  # F-040
    assert set(lat.acknowledged_ns) == {"soft"}  # only the cooperative node acknowledged
    metrics = tree.metrics()
    assert metrics["reasons"] == {"user_cancel": 1}
    assert metrics["end_to_end"] == {"p95": 85.0, "p99": 85.0}
    assert metrics["node:soft"]["p99"] == 10.0


def test_cancel_signal_carries_reason_mode_and_scope(reference_schema: dict[str, Any]) -> None:
    tree, _ = _tree()
    turn = tree.open(CancelScopeKind.TURN, "t1")
    node = tree.open(CancelScopeKind.NODE, "t1/llm", turn, CancelMode.SOFT)
    wrapper = {
        "$schema": reference_schema["$schema"],
        "$defs": reference_schema["$defs"],
        "$ref": "#/$defs/control_signal",
    }
    reasons = []
    for reason in (
        CancelReason.BARGE_IN,
        CancelReason.TIMEOUT,
        CancelReason.USER_CANCEL,
        CancelReason.PROVIDER_ERROR,
    ):
        sig = tree.cancel_signal(node, reason, authority_epoch=2, turn_id="t1")
        jsonschema.Draft202012Validator(wrapper).validate(
            msgspec.json.decode(msgspec.json.encode(sig))
        )
        assert sig.scope is CancelScopeKind.NODE and sig.emitted_by.value == "RK-16"
        reasons.append(sig.reason)
    assert reasons == ["barge_in:soft", "timeout:soft", "user_cancel:soft", "provider_error:soft"]


def test_propagation_fan_out_and_fan_in() -> None:
    # src -> a, b (fan-out); a -> m, b -> m, side -> m (fan-in); m -> out; other unrelated
    down = {"src": ["a", "b"], "a": ["m"], "b": ["m"], "side": ["m"], "m": ["out"], "other": ["x"]}
    up = {"a": ["src"], "b": ["src"], "m": ["a", "b", "side"], "out": ["m"], "x": ["other"]}
    assert propagate_cancel("src", down, up) == ["src", "a", "b"]  # m still fed by 'side'
    up_no_side = {**up, "m": ["a", "b"]}
    assert propagate_cancel("src", down, up_no_side) == ["src", "a", "b", "m", "out"]


def test_resets_run_and_other_turns_are_untouched() -> None:
    tree, _ = _tree()
    t1 = tree.open(CancelScopeKind.TURN, "t1")
    n1 = tree.open(CancelScopeKind.NODE, "t1/n", t1)
    t2 = tree.open(CancelScopeKind.TURN, "t2")
    state = {"partial": "hello"}
    n1.on_reset(state.clear)
    tree.cancel(t1, CancelReason.BARGE_IN)
    assert state == {} and not t2.cancelled and not tree.root.cancelled
    tree.close(t1)
    with pytest.raises(CancelError, match="unknown cancel scope"):
        tree.scope("t1/n")


async def test_cancel_latency_percentiles_over_many_barge_ins() -> None:
    """F-040: repeated barge-ins give a latency distribution per node and end to end."""
    tree, clock = _tree(grace_ms=1000)
    for k in range(1, 101):  # barge-in k: "tts" needs k ms to stop, "llm" stops at once
        turn = tree.open(CancelScopeKind.TURN, f"t{k}")
        tts = tree.open(CancelScopeKind.NODE, "tts", turn, CancelMode.SOFT)
        llm = tree.open(CancelScopeKind.NODE, "llm", turn, CancelMode.HARD)

        async def speak(token: Any = tts, stop_ms: int = k) -> None:
            while not token.cancelled:
                await clock.sleep(0.001)
            await clock.sleep(stop_ms / 1000)  # finish the in-flight chunk

        async def think() -> None:
            await clock.sleep(60)

        speaking, thinking = asyncio.create_task(speak()), asyncio.create_task(think())
        tts.register_task(speaking)
        llm.register_task(thinking)
        await asyncio.sleep(0)
        lat = tree.cancel(turn, CancelReason.BARGE_IN)
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the hard-cancelled task has stopped before time moves
        while not speaking.done():
            clock.advance(1)
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert thinking.cancelled()
        assert lat.node_ms() == {"tts": float(k + 1), "llm": 0.0}  # 1 ms poll + k ms chunk
        tree.close(turn)
    clock.advance(1000)
    await tree.aclose()
    metrics = tree.metrics()
    assert metrics["reasons"] == {"barge_in": 100}
    assert metrics["node:tts"] == {"p95": 97.0, "p99": 101.0}
    assert metrics["node:llm"] == {"p95": 0.0, "p99": 0.0}
    assert metrics["end_to_end"] == {"p95": 97.0, "p99": 101.0}
