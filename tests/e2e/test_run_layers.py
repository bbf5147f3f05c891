"""Configuration layers applied to a running session, and its resolved spec (F-081).

The tenant's layer inserts a compliance node before TTS and the session's layer picks the
LLM provider; ``rspp run --tenant --layers --resolved-out`` runs the resolved graph (the
inserted node blocks the reply) and writes the resolved spec tied to the session id.
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
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
REPLACEMENT = "Let us talk about something else."
LAYERS = f"""\
tenants:
  acme:
    insert.guard:
      type: compliance
      on_edge: segmenter.text->tts.text
      params: {{blocked_terms: [the weather], replacement: {REPLACEMENT}}}
sessions:
  local-session:
    providers.llm.primary: local
"""


def test_layers_insert_a_node_into_the_running_session_and_its_resolved_spec_shows_it(
    rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path
) -> None:
    layers, resolved, timeline = (tmp_path / "layers.yaml", tmp_path / "resolved.json",
                                  tmp_path / "t.jsonl")
    layers.write_text(LAYERS)
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--tenant", "acme",
                       "--layers", str(layers), "--resolved-out", str(resolved),
                       "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert turn["reply"] == REPLACEMENT  # the inserted node ran in this session
    records = [json.loads(line)["record"] for line in timeline.read_text().splitlines()]
    assert [(r.get("node_id"), r["reason"]) for r in records
            if str(r.get("reason", "")).startswith("compliance:")] == [
        ("guard", "compliance:block:1")]
    doc = json.loads(resolved.read_text())
    assert (doc["session_id"], doc["tenant"]) == ("local-session", "acme")
    assert {"id": "guard", "type": "compliance", "origin": "inserted:tenant"} in doc["nodes"]
    values = {v["path"]: (v["value"], v["source"]) for v in doc["values"]}
    assert values["providers.llm.primary"] == ("local", "session")
    assert values["nodes.guard.type"] == ("compliance", "tenant")
    edges = {e["id"] for e in doc["graph"]["edges"]}
    assert {"segmenter.text->guard.text", "guard.text->tts.text"} <= edges


def test_a_bad_layers_file_is_one_line_naming_it(rspp_cli: RsppCli, spoken: dict[str, Path],
                                                tmp_path: Path) -> None:
    layers = tmp_path / "layers.yaml"
    layers.write_text("tenants:\n  acme:\n    insert.guard: {type: compliance, "
                      "on_edge: nowhere.text->tts.text}\n")
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--tenant", "acme",
                       "--layers", str(layers))
    assert res.returncode != 0
    (line,) = res.stderr.strip().splitlines()
    assert "insert.guard" in line and "not found" in line and "Traceback" not in res.stderr
