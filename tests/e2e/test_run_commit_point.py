"""The commit point of a cancel (F-039) through ``rspp run --barge-in``.

``transport.commit_ms`` in the spec: when a barge-in cancels the speaking turn, that much
of its reply after the play position is committed and still plays; everything after it
is suppressed. The same run without it stops the reply at the play position. The turn's
recorded outcome is the same either way: ``cancel`` (barge_in), ``abort(cancelled)``,
and a ``playback_cancelled`` saying where it was fenced and what was committed.
"""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
COMMIT_MS = 400


def _spec(directory: Path, commit_ms: int | str) -> Path:
    spec = directory / f"voice_commit_{commit_ms}.yaml"
    spec.write_text(VOICE.read_text() + f"\ntransport:\n  commit_ms: {commit_ms}\n")
    return spec


def _barge(rspp_cli: RsppCli, spec: Path, spoken: dict[str, Path], tmp: Path, tag: str
           ) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    tl, out = tmp / f"{tag}.jsonl", tmp / f"{tag}.wav"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--timeline", str(tl),
                       "--output", str(out), "--json",
                       "--barge-in", f"{spoken['interrupt']}@0.3")
    assert res.returncode == 0, res.stderr
    with wave.open(str(out)) as w:
        rate = w.getframerate()
    recs = [json.loads(x)["record"] for x in tl.read_text().splitlines()]
    return json.loads(res.stdout), recs, rate


def _fenced(recs: list[dict[str, Any]], tid: str) -> tuple[int, int]:
    [reason] = [r["reason"] for r in recs
                if r.get("signal") == "playback_cancelled" and r["turn_id"] == tid]
    m = re.fullmatch(r"fenced_after_samples:(\d+),committed_samples:(\d+)", reason)
    assert m is not None, reason
    return int(m[1]), int(m[2])


def test_audio_before_the_commit_point_plays_and_the_rest_is_suppressed(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    base, base_recs, rate = _barge(rspp_cli, _spec(tmp_path, 0), spoken, tmp_path, "base")
    kept, kept_recs, _ = _barge(rspp_cli, _spec(tmp_path, COMMIT_MS), spoken, tmp_path, "kept")
    results = []
    for res, recs in ((base, base_recs), (kept, kept_recs)):
        first = res["turns"][0]
        tid = first["turn_id"]
        # the recorded outcome is the cancel's, with or without a commit point
        assert (first["terminal"], first["reason"]) == ("abort", "cancelled")
        assert [r["reason"].split(":")[0] for r in recs if r.get("signal") == "cancel"
                and r["turn_id"] == tid and r["scope"] == "turn"] == ["barge_in"]
        assert not [r for r in recs if r.get("signal") == "playback_completed"
                    and r["turn_id"] == tid]
        assert res["after_fence_outputs"] == 0  # nothing new of the turn after the fence
        fenced, committed = _fenced(recs, tid)
        assert fenced > 0  # the reply was audible when the user barged in
        played = round(first["played_s"] * rate)
        assert played == fenced + committed  # exactly the committed audio played on
        assert first["committed_s"] == pytest.approx((fenced + committed) / rate)
        # the next turn (the interruption) is answered after it
        assert res["turns"][1]["terminal"] == "commit"
        results.append((fenced, committed, played))
    (base_fenced, base_committed, base_played), (fenced, committed, played) = results
    assert fenced == base_fenced  # the barge-in fenced both runs at the same play position
    assert base_committed == 0  # no commit point: nothing after the play position plays
    # the commit point: COMMIT_MS of reply after the play position were not retracted
    # (the reply had more queued: the rest of it was suppressed)
    assert committed == COMMIT_MS * rate // 1000
    assert played == base_played + committed


def test_lint_names_a_bad_commit_point(rspp_cli: RsppCli, tmp_path: Path) -> None:
    res = rspp_cli("lint", str(_spec(tmp_path, -5)))
    assert res.returncode == 1
    assert "transport.commit_ms" in res.stdout + res.stderr
