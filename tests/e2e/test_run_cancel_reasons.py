"""Cancel reason codes through ``rspp run`` (F-035): user cancel and barge-in.

The timeline's ``cancel`` signal, the OR-02 evidence and the ``rspp_cancels_total``
series in ``--metrics-out`` all carry the reason code of the path that cancelled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _cancels(metrics: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(metrics.read_text()):
        for s in fam.samples:
            if s.name == "rspp_cancels_total" and s.labels.get("scope") == "turn":
                out[s.labels["reason"]] = s.value
    return out


def _records(timeline: Path) -> list[dict[str, Any]]:
    return [json.loads(x)["record"] for x in timeline.read_text().splitlines()]


@pytest.mark.parametrize("how", ["user_cancel", "barge_in"])
def test_cancel_reason_reaches_timeline_evidence_and_metrics(
    how: str, spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    tl, prom = tmp_path / "t.jsonl", tmp_path / "m.prom"
    trigger = (["--cancel-after", "0.3"] if how == "user_cancel"
               else ["--barge-in", f"{spoken['interrupt']}@0.3"])
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--timeline", str(tl),
                       "--metrics-out", str(prom), "--json", *trigger)
    assert res.returncode == 0, res.stderr
    first = json.loads(res.stdout)["turns"][0]
    assert (first["terminal"], first["reason"]) == ("abort", "cancelled")
    tid = first["turn_id"]
    recs = _records(tl)
    cancels = [r["reason"] for r in recs if r.get("signal") == "cancel" and r["turn_id"] == tid
               and r["scope"] == "turn"]
    assert [c.split(":")[0] for c in cancels] == [how]
    evidence = next(r for r in recs if "or02_evidence_schema_version" in r
                    and r["turn_id"] == tid)
    assert evidence["cancel"]["reason"] == how
    assert _cancels(prom).get(how) == 1.0


def test_cancel_after_rejects_a_negative_value(rspp_cli: RsppCli, spoken: dict[str, Path]) -> None:
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--cancel-after", "-1")
    assert res.returncode != 0 and "--cancel-after" in res.stderr
