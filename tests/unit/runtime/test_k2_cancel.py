"""Cancellation scopes, egress fence, commit point and propagation (the scope tree itself).

F-025, F-033, F-034, F-175. Stopping the work of a cancelled turn (hard/soft nodes, the
grace window, force-stop, per-node latency, queued data flushed) is the running session's:
e2e/test_run_node_cancel.py and integration/runtime/test_session_control.py drive it.
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


def _tree() -> tuple[CancelScopeTree, VirtualClock]:
    clock = VirtualClock(auto_advance=False)
    stamp = RecordStamp(Correlation("t", "s1", "pv"), Timebase(clock))
    return CancelScopeTree("s1", clock, stamp=stamp), clock


def test_tree_nesting_is_enforced() -> None:
    tree, _ = _tree()
    turn = tree.open(CancelScopeKind.TURN, "t1")
    node = tree.open(CancelScopeKind.NODE, "t1/tts", turn)
    tree.open(CancelScopeKind.PROVIDER_INVOCATION, "t1/tts/pi1", node)
    with pytest.raises(CancelError, match="cannot nest under"):
        tree.open(CancelScopeKind.NODE, "bad", None)
    with pytest.raises(CancelError, match="already exists"):
        tree.open(CancelScopeKind.TURN, "t1")


async def test_fence_blocks_every_output_after_acceptance_and_keeps_commit_point() -> None:
    tree, _ = _tree()
    turn = tree.open(CancelScopeKind.TURN, "t1")
    tts = tree.open(CancelScopeKind.NODE, "t1/tts", turn)
    other_turn = tree.open(CancelScopeKind.TURN, "t2")
    for pos in range(3):  # baseline: output accepted and played before cancel
        assert tree.fence.admit(tts)
        tree.fence.mark_played(tts, pos + 1)
    lat = tree.cancel(turn, CancelReason.BARGE_IN)
    assert [tree.fence.admit(tts) for _ in range(5)] == [False] * 5  # F-175: zero after fence
    assert tree.fence.blocked == {"t1/tts": 5}
    assert tree.fence.commit_point(tts) == 3  # played audio is not retracted (F-039)
    assert tree.fence.admit(other_turn)  # unaffected scope keeps flowing
    assert lat.fence_applied_ns >= lat.accepted_ns
    assert tts.cancelled and tts.reason == "barge_in"
    with pytest.raises(asyncio.CancelledError):
        tts.raise_if_cancelled()


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


def test_a_cancel_marks_its_scope_only_and_closed_scopes_are_forgotten() -> None:
    tree, _ = _tree()
    t1 = tree.open(CancelScopeKind.TURN, "t1")
    n1 = tree.open(CancelScopeKind.NODE, "t1/n", t1, CancelMode.SOFT)
    t2 = tree.open(CancelScopeKind.TURN, "t2")
    tree.cancel(t1, CancelReason.BARGE_IN)
    assert n1.cancelled and n1.reason == "barge_in"
    assert not t2.cancelled and not tree.root.cancelled
    tree.close(t1)
    with pytest.raises(CancelError, match="unknown cancel scope"):
        tree.scope("t1/n")
