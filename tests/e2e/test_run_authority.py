"""Authority in a running session through ``rspp run`` (F-156, F-157; T4, T8 of DESIGN 1).

``--rotate-at`` rotates the session's lease to the next epoch while the first reply plays:
that turn is fenced and ends ``deauthorized_drain``, ``abort(authority_loss)``, ``close``
and the second question is answered at the new epoch. ``--revoke-at`` revokes it: the
playing turn ends the same way and the next proposal is drained before it opens (T4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.transports import read_wav, write_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"


@pytest.fixture(scope="module")
def two_questions(spoken: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    pcm, rate = read_wav(spoken["question"])
    out = tmp_path_factory.mktemp("authority") / "qq.wav"
    write_wav(out, pcm + b"\x00\x00" * int(rate * 4.0) + pcm, rate)
    return out


def lifecycle(lines: list[dict[str, Any]], turn: str) -> list[tuple[str, int, str | None]]:
    return [(r["signal"], r["authority_epoch"], r.get("reason"))
            for line in lines if line["kind"] == "control_signal"
            and (r := line["record"]).get("turn_id") == turn
            and r["signal"] in ("turn_open", "deauthorized_drain", "abort", "commit", "close")]


@pytest.mark.parametrize("flag", ["--rotate-at", "--revoke-at"])
def test_lease_change_mid_reply_ends_the_turn_deauthorized(
    flag: str, two_questions: Path, rspp_cli: RsppCli, tmp_path: Path
) -> None:
    tl = tmp_path / "timeline.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(two_questions), "--timeline", str(tl),
                       "--json", flag, "3.0")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    first, second = out["turns"][0], out["turns"][1]
    assert (first["terminal"], first["reason"]) == ("abort", "authority_loss")
    assert out["after_fence_outputs"] == 0
    valid = rspp_cli("contracts", "validate", str(tl))
    assert valid.returncode == 0, valid.stdout + valid.stderr
    lines = [json.loads(x) for x in tl.read_text().splitlines() if x.strip()]
    reason = "lease_rotated" if flag == "--rotate-at" else "lease_revoked"
    assert lifecycle(lines, first["turn_id"]) == [
        ("turn_open", 1, None), ("deauthorized_drain", 1, reason), ("abort", 1, "authority_loss"),
        ("close", 1, None)]
    drains = [line["record"] for line in lines if line["kind"] == "decision_outcome"
              and line["record"]["outcome_kind"] == "deauthorized_drain"]
    if flag == "--rotate-at":
        assert second["terminal"] == "commit" and second["reply"], out
        assert lifecycle(lines, second["turn_id"]) == [
            ("turn_open", 2, None), ("commit", 2, None), ("close", 2, None)]
        assert [(d["phase"], d["scope"]) for d in drains] == [("active_turn", "turn")]
    else:  # T4: the next proposal is drained pre-open; no turn_open, abort or close
        assert second["terminal"] == "refused"
        assert lifecycle(lines, second["turn_id"]) == [("deauthorized_drain", 1, "deauthorized")]
        assert [(d["turn_id"], d["phase"]) for d in drains] == [
            (first["turn_id"], "active_turn"), (second["turn_id"], "pre_turn")]



@pytest.mark.parametrize(("flag", "recorded"), [
    ("--rotate-at", ("lease_rotated", "CP-07", 2, "lease_rotated")),
    ("--revoke-at", ("deauthorized_drain", "RK-24", 1, "lease_revoked")),
])
def test_a_lease_change_replays_at_its_recorded_place_and_a_tampered_one_diverges(
    flag: str, recorded: tuple[str, str, int, str], two_questions: Path, rspp_cli: RsppCli,
    tmp_path: Path
) -> None:
    """The lease change is recorded as the session learned it (a rotation: the control
    plane's ``lease_rotated`` at the new epoch; a loss: the session's ``deauthorized_drain``)
    and ``rspp replay`` applies it where it was recorded, like the ingress: no divergence.
    A copy without that record replays without the change and diverges on AUTHORITY."""
    tl = tmp_path / "timeline.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(two_questions), "--timeline", str(tl),
                       "--record-level", "L2", flag, "3.0")
    assert res.returncode == 0, res.stderr
    lines = tl.read_text().splitlines(keepends=True)
    changes = [(i, r) for i, x in enumerate(lines) if (r := json.loads(x)["record"]).get(
        "signal") in ("lease_rotated", "deauthorized_drain") and not r.get("turn_id")]
    assert [(r["signal"], r["emitted_by"], r["authority_epoch"], r["reason"])
            for _, r in changes] == [recorded]
    report = tmp_path / "replay.json"
    faithful = rspp_cli("replay", str(tl), "--spec", str(VOICE), "--report", str(report))
    assert faithful.returncode == 0, faithful.stdout + faithful.stderr
    counts = json.loads(report.read_text())["divergences"]
    assert all(counts[c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")), counts
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(x for i, x in enumerate(lines) if i != changes[0][0]))
    out = rspp_cli("replay", str(tampered), "--spec", str(VOICE), "--report", str(report))
    assert out.returncode == 1
    assert json.loads(report.read_text())["divergences"]["AUTHORITY"] > 0
