"""``rspp run``: every event of a session names its session, and every event of a turn its
turn - the user's speech that opened it included (F-013, docs/correlation.md).

One real ``rspp run`` (CLI process, espeak-ng / pocketsphinx) of the offline assistant:
silence, a question, a barge-in on its reply, a long pause, another question - three
turns (aborted, committed, committed) through vad, stt, llm, segmenter and tts. The
timeline, the JSON logs and the spans it leaves are read back.
"""

from __future__ import annotations

import json
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.testing import TurnCorrelation, turn_correlation

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
SID = "local-session"  # the session id `rspp run` uses


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _conversation(first: Path, second: Path, out: Path) -> Path:
    """0.6 s of silence, ``first``, 8 s of silence (its reply plays out), ``second``, 1.5 s."""
    with wave.open(str(first)) as a, wave.open(str(second)) as b:
        params = a.getparams()
        one, two = a.readframes(a.getnframes()), b.readframes(b.getnframes())
    rate = params.framerate

    def silence(s: float) -> bytes:
        return bytes(2 * int(rate * s))

    with wave.open(str(out), "wb") as w:
        w.setparams(params)
        w.writeframes(silence(0.6) + one + silence(8) + two + silence(1.5))
    return out


@dataclass(frozen=True)
class Run:
    result: dict[str, Any]
    timeline: Path
    lines: list[dict[str, Any]]
    logs: list[dict[str, Any]]
    spans: list[dict[str, Any]]
    check: TurnCorrelation


@pytest.fixture(scope="module")
def run(spoken: dict[str, Path], rspp_cli: RsppCli,
        tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("correlation")
    later = rspp_cli.say("what time is it", tmp / "t.wav")
    conv = _conversation(spoken["question"], later, tmp / "conv.wav")
    timeline, logs, spans = tmp / "t.jsonl", tmp / "log.jsonl", tmp / "spans.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(conv), "--barge-in",
                       f"{spoken['interrupt']}@0.4", "--record-level", "L2", "--json",
                       "--timeline", str(timeline), "--log-out", str(logs),
                       "--trace-out", str(spans))
    assert res.returncode == 0, res.stderr
    lines = _lines(timeline)
    return Run(json.loads(res.stdout), timeline, lines, _lines(logs), _lines(spans),
               turn_correlation(lines, SID))


def test_every_event_of_each_turn_carries_its_turn_id(run: Run) -> None:
    turns = [t["turn_id"] for t in run.result["turns"]]
    assert [t["terminal"] for t in run.result["turns"]] == ["abort", "commit", "commit"]
    assert set(run.check.opened) == set(turns)
    assert run.check.problems == []
    for tid in turns:  # several nodes' events name each turn (llm: captured at L2)
        assert {"vad", "stt", "llm", "tts"} <= run.check.nodes[tid], (tid, run.check.nodes)
    # ingress frames inside a turn name it as session-scoped correlation (the frames are
    # the user's, not the turn's work: a cancel of the turn never drops them)
    framed = [ln["record"] for ln in run.lines if ln["record"].get("edge_id") == "input.audio"]
    assert all(r["event_scope"] == "session" for r in framed)
    assert {r["event_scope"] for r in framed if r.get("turn_id")} == {"session"}


def test_each_turn_groups_the_speech_that_opened_it(run: Run) -> None:
    c = run.check
    t1, t2, t3 = (t["turn_id"] for t in run.result["turns"])
    framed = [ln["record"] for ln in run.lines if ln["record"].get("edge_id") == "input.audio"]
    assert framed[0].get("turn_id") is None  # the silence before the first utterance
    assert c.unnamed_frames > 0
    for tid in (t1, t2, t3):  # the utterance's frames come before the turn opens
        before = [s for s in c.frames[tid] if s < c.opened[tid]]
        assert len(before) >= 25, (tid, len(before))  # half a second of 20 ms frames at least
    # the barge-in speech: its frames name the interrupted turn while it is open, the
    # turn it opens from that turn's close on
    assert min(c.frames[t2]) > c.closed[t1]
    assert max(c.frames[t1]) <= c.closed[t1]
    # the STT's partial transcripts of an utterance name the turn it opens
    partials = [ln["record"] for ln in run.lines
                if ln["record"].get("edge_id") == "output.transcript_partial"]
    named = {r.get("turn_id") for r in partials}
    assert {t1, t3} <= named and None not in named


def test_timeline_show_groups_a_turn_with_its_speech(run: Run, rspp_cli: RsppCli) -> None:
    """`rspp timeline show --turn T`: the turn's lines, its opening speech included."""
    t3 = run.result["turns"][2]["turn_id"]
    naming = [ln for ln in run.lines if ln["record"].get("turn_id") == t3]
    res = rspp_cli("timeline", "show", str(run.timeline), "--turn", t3)
    assert res.returncode == 0, res.stderr
    m = re.search(r"\((\d+) of (\d+) lines\)", res.stdout)
    assert m is not None, res.stdout[:300]
    assert (int(m[1]), int(m[2])) == (len(naming), len(run.lines))
    assert sum(1 for ln in naming if ln["record"].get("edge_id") == "input.audio") == len(
        run.check.frames[t3])


def test_logs_and_spans_use_the_timeline_ids(run: Run) -> None:
    turns = set(run.check.opened)
    assert run.logs and run.spans
    for ln in run.logs:
        assert ln["session_id"] == SID and ln["pipeline_version"] == "voice-assistant@1.0.0"
        assert ln["turn_id"] is None or ln["turn_id"] in turns, ln
    assert {ln["turn_id"] for ln in run.logs if ln["message"] == "turn opened"} == turns
    (trace_id,) = {sp["context"]["trace_id"] for sp in run.spans}
    assert trace_id
    assert {sp["attributes"]["rspp.turn_id"] for sp in run.spans
            if sp["name"] == "rspp.turn"} == turns
    for sp in run.spans:
        assert sp["attributes"]["rspp.session_id"] == SID
        assert sp["attributes"].get("rspp.turn_id") in turns | {None}, sp["name"]


def test_the_recording_replays_exactly(run: Run, rspp_cli: RsppCli, tmp_path: Path) -> None:
    """The replayed timeline names the same turns on the same records; no divergence."""
    out, report = tmp_path / "replayed.jsonl", tmp_path / "report.json"
    res = rspp_cli("replay", str(run.timeline), "--spec", str(VOICE), "--report", str(report),
                   "--timeline-out", str(out))
    doc = json.loads(report.read_text())
    # (TIMING compares session-clock offsets: a loaded machine moves them, not a failing class)
    assert all(n == 0 for c, n in doc["divergences"].items() if c != "TIMING"), doc["findings"]
    assert res.returncode == 0, res.stdout + res.stderr

    def ids(lines: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((ln["record"].get("runtime_sequence", -1), ln["kind"],
                       ln["record"].get("edge_id") or "", ln["record"].get("signal") or "",
                       ln["record"].get("turn_id") or "", ln["record"].get("event_scope") or "")
                      for ln in lines if ln["record"].get("lane") != "TelemetryLane")

    assert ids(_lines(out)) == ids(run.lines)
