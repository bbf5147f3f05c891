"""Turn arbitration policy (F-140) through ``rspp run``, ``rspp replay`` and ``rspp lint``.

The offline assistant with ``turns: {overlap: ...}``; the input is a spoken question and,
0.4 s into the reply, a second utterance (``--barge-in``): two overlapping utterances.

* ``preempt`` (the default): the user's speech cancels the speaking turn, the second
  utterance opens its own turn;
* ``queue``: the reply plays on; the second proposal is recorded as ``defer
  (overlap_queued)`` and its turn opens only after the first turn committed;
* ``reject``: the reply plays on; the second proposal is recorded as ``reject
  (overlap_rejected)`` and opens no turn.

Each L2 timeline replays with no ORDERING, PLAN, OUTCOME or AUTHORITY divergence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.spec import compile_spec, load_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _spec(tmp_path: Path, overlap: str) -> Path:
    spec = tmp_path / f"voice_{overlap}.yaml"
    spec.write_text(VOICE.read_text() + f"turns:\n  overlap: {overlap}\n")
    return spec


def _signals(timeline: Path) -> list[tuple[str, str | None, str | None]]:
    out = []
    for line in timeline.read_text().splitlines():
        d: dict[str, Any] = json.loads(line)
        rec = d["record"]
        if d["kind"] == "control_signal" and rec["signal"] in (
                "turn_open_proposed", "turn_open", "commit", "abort", "defer", "reject",
                "barge_in"):
            out.append((rec["signal"], rec.get("reason"), rec.get("turn_id")))
    return out


@pytest.mark.parametrize("overlap", ["preempt", "queue", "reject"])
def test_overlapping_utterances_follow_the_configured_policy(
        overlap: str, spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path,
        checked_timeline: Callable[[Path], list[dict[str, Any]]]) -> None:
    spec, tl = _spec(tmp_path, overlap), tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--barge-in",
                       f"{spoken['interrupt']}@0.4", "--record-level", "L2",
                       "--timeline", str(tl), "--json")
    assert res.returncode == 0, res.stderr
    turns = json.loads(res.stdout)["turns"]
    sigs = _signals(tl)
    names = [s for s, _, _ in sigs]
    opened = [t for s, _, t in sigs if s == "turn_open"]
    if overlap == "preempt":
        assert [(t["terminal"], t["reason"]) for t in turns] == [
            ("abort", "cancelled"), ("commit", None)]
        assert "barge_in" in names and "defer" not in names
        assert ("reject", "overlap_rejected", None) not in sigs
    elif overlap == "queue":
        assert [t["terminal"] for t in turns] == ["commit", "commit"]
        assert "your name" in turns[1]["transcript"]
        assert "barge_in" not in names and len(opened) == 2
        queued = sigs.index(("defer", "overlap_queued", None))
        first_commit = sigs.index(("commit", None, opened[0]))
        # queued while turn 1 was Active, opened only after turn 1 committed
        assert names.index("turn_open") < queued < first_commit \
            < sigs.index(("turn_open", None, opened[1]))
    else:
        assert [t["terminal"] for t in turns] == ["commit"]
        assert "barge_in" not in names and len(opened) == 1
        assert names.count("turn_open_proposed") == 2
        rejected = sigs.index(("reject", "overlap_rejected", None))
        assert names.index("turn_open") < rejected < sigs.index(("commit", None, opened[0]))
    checked_timeline(tl)  # every record is of the wire contract
    rspp_cli.replays_clean(tl, spec, tmp_path / "replay.json")


def test_turns_policy_enters_the_graph_hash_only_when_declared(tmp_path: Path) -> None:
    base = compile_spec(load_spec(VOICE)).graph_hash
    hashes = {o: compile_spec(load_spec(_spec(tmp_path, o))).graph_hash
              for o in ("preempt", "queue", "reject")}
    assert base not in hashes.values() and len(set(hashes.values())) == 3


@pytest.mark.parametrize(("field", "value"), [("overlap", "wait"), ("late_events", "remap")])
def test_lint_names_a_bad_turns_value(field: str, value: str, rspp_cli: RsppCli,
                                      tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(VOICE.read_text() + f"turns:\n  {field}: {value}\n")
    res = rspp_cli("lint", str(spec))
    assert res.returncode == 1
    assert f"turns.{field}: '{value}' is not allowed" in res.stdout + res.stderr
