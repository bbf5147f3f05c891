"""A compliance node in a spec filters the spoken reply through ``rspp run`` (F-118).

The offline assistant answers the weather question with one sentence naming "the weather";
a ``compliance`` node between the sentence segmenter and TTS blocks that sentence, so TTS
speaks the replacement instead and the timeline carries the node's audit record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
REPLACEMENT = "Let us talk about something else."


def _compliance_spec(tmp_path: Path) -> Path:
    text = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    node = ("  - id: comp\n    type: compliance\n"
            f"    params: {{blocked_terms: [the weather], replacement: {REPLACEMENT}}}\n"
            "  - id: tts\n")
    edges = ("  - {from: segmenter.text, to: comp.text}\n"
             "  - {from: comp.text, to: tts.text}\n")
    spec = tmp_path / "compliance.yaml"
    spec.write_text(text.replace("  - id: tts\n", node, 1)
                    .replace("  - {from: segmenter.text, to: tts.text}\n", edges, 1))
    return spec


def test_compliance_node_blocks_the_reply_before_tts_and_audits_it(
    rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path
) -> None:
    timeline = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(_compliance_spec(tmp_path)), "--input", str(spoken["question"]),
                       "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert "weather" in turn["transcript"]  # the user's words are not filtered ...
    assert turn["terminal"] == "commit"
    assert turn["reply"] == REPLACEMENT  # ... what TTS speaks is
    records = [json.loads(line)["record"] for line in timeline.read_text().splitlines()]
    audits = [(r.get("node_id"), r["reason"]) for r in records
              if str(r.get("reason", "")).startswith("compliance:")]
    assert audits == [("comp", "compliance:block:1")]
