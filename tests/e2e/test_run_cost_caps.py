"""Cost caps from the spec through `rspp run` (F-058).

`providers.llm.config.cost_cap.per_turn` caps the LLM tokens of a turn: the reply is
truncated at the cap (the turn still answers), a `budget_exhausted` control signal
names the cap and the action, and the session summary counts the enforcement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"


def test_a_turn_token_cap_truncates_the_reply_and_emits_the_enforcement(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    text = VOICE.read_text()
    assert "llm: {primary: local}" in text
    spec = tmp_path / "capped.yaml"
    spec.write_text(text.replace("llm: {primary: local}",
                                 "llm: {primary: local, config: {cost_cap: {per_turn: 3}}}"))
    timeline = tmp_path / "t.jsonl"
    run = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--json",
                       "--timeline", str(timeline))
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    (turn,) = result["turns"]
    assert turn["terminal"] == "commit" and turn["reply"].strip()
    summary = result["summary"]
    assert summary["llm_tokens"] == 3 and summary["cap_enforcements"] >= 1
    reasons = [json.loads(line)["record"]["reason"] for line in timeline.read_text().splitlines()
               if '"budget_exhausted"' in line]
    assert any(r.startswith("cost_cap llm_tokens action=truncate") and
               "llm_tokens_per_turn=3" in r for r in reasons), reasons

    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("llm: {primary: local}",
                                "llm: {primary: local, config: {cost_cap: {per_turn: 0}}}"))
    refused = rspp_cli("lint", str(bad))
    assert refused.returncode == 1
    assert "providers.llm.config.cost_cap" in refused.stdout and "must be a number > 0" in (
        refused.stdout), refused.stdout
