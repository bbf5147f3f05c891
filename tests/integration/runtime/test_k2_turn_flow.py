"""Kernel II end to end through the product's runner (``rspp run``'s :func:`run_local`).

The real session assembly (SessionActor, turn driver, arbiter, admission, authority
guard, plan resolver, cancel scopes) over the loopback transport with the offline
providers, fed spoken audio:

* a barge-in cancels the speaking turn: no output of the cancelled turn is accepted
  after its fence, audio played before the fence stays played (F-039), the lifecycle
  is ``turn_open, abort(cancelled), close`` and the interruption opens and commits the
  next turn (F-025, F-033, F-175);
* a lease rotation mid-reply ends the turn ``deauthorized_drain, abort(authority_loss),
  close`` with zero outputs accepted after the fence, and the next turn opens at the
  new epoch (F-156, NF-027).

Every record the session wrote validates against the reference schema.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from rspp.runner import RunOptions, run_local
from rspp.testing import Utterance, speak
from rspp.transports import write_wav

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
RATE = 16000


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("k2")
    question = speak(Utterance("weather", "what is the weather like today"))
    interrupt = speak(Utterance("name", "what is your name"))
    out = {"question": d / "q.wav", "interrupt": d / "i.wav", "two": d / "qq.wav"}
    write_wav(out["question"], question, RATE)
    write_wav(out["interrupt"], interrupt, RATE)
    write_wav(out["two"], question + bytes(2 * RATE * 4) + question, RATE)
    return out


def _timeline(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _lifecycle(lines: Iterable[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["signal"], r["turn_id"], r["authority_epoch"]) for ln in lines
            if ln["kind"] == "control_signal" and (r := ln["record"])["signal"] in
            ("turn_open", "commit", "abort", "close")]


def _after_cancel(lines: list[dict[str, Any]], turn: str, signal: str) -> list[str]:
    """Signals of ``turn`` recorded after its first ``signal`` (the fence)."""
    at = next(i for i, ln in enumerate(lines) if ln["kind"] == "control_signal"
              and ln["record"]["signal"] == signal and ln["record"].get("turn_id") == turn)
    return [ln["record"]["signal"] for ln in lines[at + 1:] if ln["kind"] == "control_signal"
            and ln["record"].get("turn_id") == turn]


def test_barge_in_fences_egress_and_next_turn_opens(
    wavs: dict[str, Path], tmp_path: Path, check_records: Callable[[Iterable[Any]], int]
) -> None:
    tl = tmp_path / "t.jsonl"
    res = asyncio.run(run_local(RunOptions(
        spec=EXAMPLE, input=wavs["question"], timeline=tl, barge_in=wavs["interrupt"],
        barge_in_after_s=0.3)))
    first, second = res.turns[0], res.turns[1]
    assert (first.terminal, first.reason) == ("abort", "cancelled")
    assert first.played_s > 0  # played before the fence, never retracted (commit point)
    assert res.after_fence_outputs == 0  # nothing of the cancelled turn after the fence
    assert second.terminal == "commit" and "name" in second.transcript and second.reply
    lines = _timeline(tl)
    assert [(s, t) for s, t, _ in _lifecycle(lines)] == [
        ("turn_open", first.turn_id), ("abort", first.turn_id), ("close", first.turn_id),
        ("turn_open", second.turn_id), ("commit", second.turn_id), ("close", second.turn_id)]
    after = _after_cancel(lines, first.turn_id, "cancel")
    assert not {"output_accepted", "playback_started"} & set(after)
    assert "playback_cancelled" in after
    # the cancel reached every node scope of the interrupted turn and none of the next (F-034)
    scopes = {(r["turn_id"], r["scope"]) for ln in lines if ln["kind"] == "control_signal"
              and (r := ln["record"])["signal"] == "cancel"}
    assert scopes == {(first.turn_id, "turn"), (first.turn_id, "node")}
    nodes = {ln["record"]["node_id"] for ln in lines if ln["record"].get("signal") == "cancel"
             and ln["record"]["scope"] == "node"}
    assert nodes == {"vad", "stt", "llm", "segmenter", "tts"}
    check_records(ln["record"] for ln in lines if ln["kind"] != "or02_evidence")


def test_lease_rotation_mid_turn_drains_and_accepts_no_stale_output(
    wavs: dict[str, Path], tmp_path: Path, check_records: Callable[[Iterable[Any]], int]
) -> None:
    tl = tmp_path / "t.jsonl"
    res = asyncio.run(run_local(RunOptions(spec=EXAMPLE, input=wavs["two"], timeline=tl,
                                           rotate_at_s=3.0)))
    first, second = res.turns[0], res.turns[1]
    assert (first.terminal, first.reason) == ("abort", "authority_loss")
    assert res.after_fence_outputs == 0  # zero accepted outputs of the old epoch
    assert second.terminal == "commit" and second.reply
    lines = _timeline(tl)
    assert _lifecycle(lines) == [
        ("turn_open", first.turn_id, 1), ("abort", first.turn_id, 1), ("close", first.turn_id, 1),
        ("turn_open", second.turn_id, 2), ("commit", second.turn_id, 2),
        ("close", second.turn_id, 2)]
    assert not {"output_accepted", "playback_started"} & set(
        _after_cancel(lines, first.turn_id, "deauthorized_drain"))
    check_records(ln["record"] for ln in lines if ln["kind"] != "or02_evidence")
