"""Late events of a preempted turn through ``rspp run`` and ``rspp replay`` (F-140, T11).

The offline assistant with a custom ``stubborn`` node between the TTS and the speaker: a
reply stream that ignores cancels. It passes each reply chunk on at once, and when its
turn is cancelled it goes on delivering that turn's audio anyway, one 20 ms piece per
input frame (``input.audio -> stubborn.tick``), then the turn's ``audio_end``, each
piece noted in an audit record (``late_output:<turn>:<kind>``). The input is a question
and, 0.4 s into the reply, a second utterance (``--barge-in``): the barge-in preempts
turn 1 (``abort(cancelled)``, ``close``) while the stream of turn 1 keeps coming, before
and while turn 2 is Active.

Every such output is an event of a closed turn: the egress refuses it (nothing reaches
the transport or the output WAV) and the spec's ``turns.late_events`` policy is recorded
once for the turn, after its close: ``reject late_event_ignored`` (``diagnostics``) or
``reject late_event_dropped`` (``drop``), naming turn 1 and what arrived (the node, the
output edge, the late event's id). Two runs of the same input give the same arbitration
and late-event outcomes and the same plans (but for the turn-start wall clock and the
sequence marker: the barge-in is placed 0.4 s into the reply's playback, which a file run
of the offline engines may see a frame either way), and ``rspp replay`` of each run
reproduces them, with the recorded plan hashes, and no ORDERING, PLAN, OUTCOME or
AUTHORITY divergence.

The late arrival is an input of the recording (``rspp.turns._late_events``): the replay
feeds the recorded one and derives none from its own nodes' outputs after the fence (a
recording without it replays without a late event, though the replayed stubborn node
delivers the same late audio), and applies the replayed spec's policy to it (replayed
against the other policy, the ``reject`` reason diverges).
"""

from __future__ import annotations

import json
import textwrap
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

#: two runs and two replays of the offline assistant a test: ~40 s quiet, ~3x beside
#: stress-ng --cpu 2
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
LATE_PIECES = 150  # 3 s of late audio: it outlasts turn 1 and reaches into turn 2

STUBBORN = textwrap.dedent('''
    from collections import deque

    from rspp import Event, Node


    class Stubborn(Node):
        """A reply stream that ignores cancels: after turn T is cancelled it keeps
        delivering T's audio, one 20 ms piece per input frame, then T's end."""

        inputs = ("audio", "tick")
        outputs = ("audio",)
        port_types = {"audio": "audio", "tick": "audio"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.limit = int((params or {}).get("late_pieces", 8))
            self.kept = {}
            self.late = {}

        def process(self, event: Event, port: str):
            if port == "tick":
                for tid in sorted(self.late):
                    pieces = self.late[tid]
                    ev = pieces.popleft()
                    if not pieces:
                        del self.late[tid]
                    self.ctx.audit(f"late_output:{tid}:{ev.kind}")
                    self.ctx.emit(ev, "audio")
                return None
            keep = self.kept.setdefault(event.turn_id, [])
            fmt = event.audio_format
            if event.kind == "audio_chunk" and isinstance(event.payload, bytes) and fmt:
                step = fmt.sample_rate * fmt.channels * 2 // 50
                for i in range(0, len(event.payload), step):
                    if len(keep) < self.limit:
                        keep.append(event.derive("audio_chunk", event.payload[i:i + step],
                                                 audio_format=fmt))
            return event

        def on_cancel(self, turn_id, reason):
            kept = self.kept.pop(turn_id, None)
            if kept:
                end = kept[-1].derive("audio_end", None, attrs={"eos": True})
                self.late[turn_id] = deque([*kept, end])
''')

#: what a run decided: lifecycle and arbitration signals (with reason and turn) in order
ARBITRATION = ("turn_open_proposed", "turn_open", "barge_in", "abort", "commit", "close",
               "reject", "defer")


def _spec(directory: Path, late_events: str) -> Path:
    text = VOICE.read_text()
    for old, new in (
        ("  - id: tts\n    type: tts\n",
         "  - id: tts\n    type: tts\n  - id: stubborn\n    type: python:stubborn:Stubborn\n"
         f"    params: {{late_pieces: {LATE_PIECES}}}\n"),
        ("  - {from: tts.audio, to: output.audio}\n",
         "  - {from: tts.audio, to: stubborn.audio}\n"
         "  - {from: input.audio, to: stubborn.tick}\n"
         "  - {from: stubborn.audio, to: output.audio}\n"),
    ):
        assert old in text
        text = text.replace(old, new)
    (directory / "stubborn.py").write_text(STUBBORN)
    spec = directory / f"late_{late_events}.yaml"
    spec.write_text(text + f"turns:\n  overlap: preempt\n  late_events: {late_events}\n")
    return spec


def _outcomes(lines: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(r["signal"], r.get("reason"), r.get("turn_id"))
            for r in (ln["record"] for ln in lines if ln["kind"] == "control_signal")
            if r["signal"] in ARBITRATION]


def _plans(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ln["record"]["turn_id"]: ln["record"] for ln in lines
            if ln["kind"] == "resolved_turn_plan"}


def _without_run_clock(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan but for its hash, the turn-start wall clock it records (F-150) and its
    ``runtime_sequence_from`` marker (see the module docstring)."""
    det = dict(plan["determinism"])
    det["nondeterministic_inputs"] = [i for i in det["nondeterministic_inputs"]
                                      if i["input_key"] != "turn_start_wall_ms"]
    det["ordering_markers"] = [m for m in det["ordering_markers"]
                               if not m.startswith("runtime_sequence_from:")]
    det.pop("ordering_marker", None)
    return {**{k: v for k, v in plan.items() if k != "plan_hash"}, "determinism": det}


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _at(lines: list[dict[str, Any]], signal: str, turn: str) -> int:
    return next(i for i, ln in enumerate(lines) if ln["kind"] == "control_signal"
                and ln["record"]["signal"] == signal and ln["record"].get("turn_id") == turn)


@pytest.mark.parametrize(("late_events", "decision"), [("diagnostics", "late_event_ignored"),
                                                       ("drop", "late_event_dropped")])
def test_late_outputs_of_a_preempted_turn_follow_the_late_events_policy(
        late_events: str, decision: str, spoken: dict[str, Path], rspp_cli: RsppCli,
        tmp_path: Path, checked_timeline: Callable[[Path], list[dict[str, Any]]]) -> None:
    spec = _spec(tmp_path, late_events)
    runs = []
    for n in (1, 2):
        tl, wav, replayed = (tmp_path / f"t{n}.jsonl", tmp_path / f"out{n}.wav",
                             tmp_path / f"replayed{n}.jsonl")
        res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--barge-in",
                           f"{spoken['interrupt']}@0.4", "--record-level", "L2",
                           "--timeline", str(tl), "--output", str(wav), "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        first, second = (t["turn_id"] for t in out["turns"])
        assert [(t["terminal"], t["reason"]) for t in out["turns"]] == [
            ("abort", "cancelled"), ("commit", None)]
        assert "your name" in out["turns"][1]["transcript"] and out["turns"][1]["reply"]
        lines = checked_timeline(tl)  # valid records; one terminal then close per turn

        # the stream of turn 1 went on after its close, before and while turn 2 was Active
        late = [i for i, ln in enumerate(lines)
                if str(ln["record"].get("reason", "")).startswith(f"late_output:{first}:")]
        assert len(late) == LATE_PIECES + 1
        closed, opened2 = _at(lines, "close", first), _at(lines, "turn_open", second)
        assert closed < late[0] and late[0] < opened2 < late[-1] < _at(lines, "close", second)
        # ... and the policy's decision is recorded once, for turn 1, at its first late output
        rejects = [(i, ln["record"]) for i, ln in enumerate(lines)
                   if ln["kind"] == "control_signal" and ln["record"]["signal"] == "reject"]
        assert [(r["reason"], r["turn_id"]) for _, r in rejects] == [(decision, first)]
        assert late[0] < rejects[0][0] < late[1]
        # ... naming what arrived: the stubborn node's output at the speaker, by its id
        arrival = rejects[0][1]
        assert (arrival["node_id"], arrival["edge_id"]) == ("stubborn", "output.audio")
        assert isinstance(arrival["causal_parent_id"], str)

        # no late output reached the transport: no output of turn 1 after its close, and
        # the output WAV holds what was played of each turn, nothing more
        assert out["after_fence_outputs"] == 0
        assert not [ln for ln in lines[closed:] if ln["kind"] == "event_record"
                    and str(ln["record"].get("edge_id", "")).startswith("output.")
                    and ln["record"].get("turn_id") == first]
        with wave.open(str(wav)) as w:
            wav_s = w.getnframes() / w.getframerate()
        assert wav_s == pytest.approx(sum(t["played_s"] for t in out["turns"]), abs=0.002)
        assert out["turns"][0]["played_s"] < 1.0  # cut at the barge-in

        # the replay reproduces the outcomes and the plans (hashes included)
        rep = rspp_cli("replay", str(tl), "--spec", str(spec), "--report",
                       str(tmp_path / f"replay{n}.json"), "--timeline-out", str(replayed))
        doc = json.loads((tmp_path / f"replay{n}.json").read_text())
        assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME",
                                                         "AUTHORITY")), doc["findings"]
        assert rep.returncode == 0, rep.stdout + rep.stderr
        again = _read(replayed)
        assert _outcomes(again) == _outcomes(lines)
        assert {t: p["plan_hash"] for t, p in _plans(again).items()} == \
            {t: p["plan_hash"] for t, p in _plans(lines).items()}
        runs.append((_outcomes(lines), _plans(lines)))

    # identical input, identical arbitration and late-event outcomes and plans
    (outcomes1, plans1), (outcomes2, plans2) = runs
    assert outcomes1 == outcomes2
    assert {t: _without_run_clock(p) for t, p in plans1.items()} == \
        {t: _without_run_clock(p) for t, p in plans2.items()}


def test_the_replay_feeds_the_recorded_arrival_and_applies_its_specs_policy(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    """The arrival is the recording's input, the decision the replayed spec's policy:
    replayed without its recorded arrival, no late event; against ``drop``, the other
    reason."""
    late_events, decision = "diagnostics", "late_event_ignored"
    spec, tl = _spec(tmp_path, late_events), tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--barge-in",
                       f"{spoken['interrupt']}@0.4", "--record-level", "L2",
                       "--timeline", str(tl), "--json")
    assert res.returncode == 0, res.stderr
    first, second = (t["turn_id"] for t in json.loads(res.stdout)["turns"])
    text = tl.read_text().splitlines()
    kept = [x for x in text if not (json.loads(x)["kind"] == "control_signal"
                                    and json.loads(x)["record"].get("reason") == decision)]
    assert len(kept) == len(text) - 1
    bare = tmp_path / "no_arrival.jsonl"
    bare.write_text("\n".join(kept) + "\n")
    out = tmp_path / "no_arrival_replayed.jsonl"
    rep = rspp_cli("replay", str(bare), "--spec", str(spec), "--report",
                   str(tmp_path / "no_arrival.json"), "--timeline-out", str(out))
    doc = json.loads((tmp_path / "no_arrival.json").read_text())
    # (the missing record moves the sequence marker of turn 2's plan by one: PLAN only)
    assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "OUTCOME", "AUTHORITY")), \
        doc["findings"]
    assert {(f["class"], f["turn_id"], f["message"]) for f in doc["findings"]} <= {
        ("PLAN", second, "plan_hash differs (fields: determinism)")}, doc["findings"]
    assert rep.returncode in (0, 1), rep.stderr
    again = _read(out)
    # the replayed stubborn node delivered turn 1's late audio again, all of it fenced ...
    assert len([ln for ln in again if str(ln["record"].get("reason", "")).startswith(
        f"late_output:{first}:")]) == LATE_PIECES + 1
    assert not [ln for ln in again[_at(again, "close", first):]
                if ln["kind"] == "event_record" and ln["record"].get("edge_id") == "output.audio"
                and ln["record"].get("turn_id") == first]
    # ... and no late event was derived from it: none was recorded
    assert "reject" not in [s for s, _, _ in _outcomes(again)]

    rep = rspp_cli("replay", str(tl), "--spec", str(_spec(tmp_path, "drop")), "--report",
                   str(tmp_path / "other_policy.json"))
    found = json.loads((tmp_path / "other_policy.json").read_text())["findings"]
    assert rep.returncode != 0
    assert [(f["class"], f["expected"], f["actual"]) for f in found
            if "reject" in f["message"]] == [("OUTCOME", decision, "late_event_dropped")], found
