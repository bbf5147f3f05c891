"""Debug events per session through ``rspp run`` (F-027).

By default a session records no debug events; ``--debug`` adds the kernel's debug
records (one TelemetryLane ``debug`` record per control command) to its timeline and
changes nothing else: the same control signals in the same order, the same reply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _run(rspp_cli: RsppCli, question: Path, tl: Path, *extra: str
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = rspp_cli.run(str(VOICE), "--input", str(question), "--timeline", str(tl), "--json",
                       *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), [json.loads(x)["record"] for x in tl.read_text().splitlines()]


def _is_debug(r: dict[str, Any]) -> bool:
    return r.get("lane") == "TelemetryLane" and ":debug:" in r.get("event_id", "")


def test_debug_events_only_with_debug_and_nothing_else_changes(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    plain, plain_recs = _run(rspp_cli, spoken["question"], tmp_path / "plain.jsonl")
    debug, debug_recs = _run(rspp_cli, spoken["question"], tmp_path / "debug.jsonl", "--debug")
    assert not [r for r in plain_recs if _is_debug(r)]  # off by default
    tid = debug["turns"][0]["turn_id"]
    reasons = {r["reason"] for r in debug_recs if _is_debug(r) and r.get("turn_id") == tid}
    assert {"control:turn_start", "control:turn_end"} <= reasons, reasons

    def signals(recs: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
        return [(r["signal"], r.get("turn_id"), r.get("reason")) for r in recs
                if "signal" in r and r["signal"] != "recording_level_downgraded"]

    assert signals(debug_recs) == signals(plain_recs)  # the business logic is unchanged
    assert [(t["terminal"], t["reply"]) for t in debug["turns"]] == \
        [(t["terminal"], t["reply"]) for t in plain["turns"]]
