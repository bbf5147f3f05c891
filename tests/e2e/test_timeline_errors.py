"""``rspp timeline errors`` aggregates the error records of ``rspp run`` timelines (F-131).

A custom node fails on every final transcript (``runtime_internal_error``: the turn is
aborted with that code). Two runs, two timelines: the command groups their error
records by code and node, with the code's retryability and default action, the turns
hit and the turns aborted on it; a clean timeline has none (exit 0).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.testing import DOMAIN_STT, SILENCE_VAD, voice_assistant_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

NODES = textwrap.dedent('''
    from rspp import Event, Node


    class Boom(Node):
        """Fails on every final transcript."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}

        async def process(self, event: Event, port: str):
            if event.kind == "text" and event.final:
                raise RuntimeError("the lookup service is down")
            return None
''')

SPEC = voice_assistant_spec(
    "failing-node", stt=DOMAIN_STT, vad=SILENCE_VAD, reply=False,
    nodes=['{id: boom, type: "python:boom_nodes:Boom"}'],
    edges=["{from: stt.final, to: boom.text}", "{from: boom.text, to: output.text}"])


def test_timeline_errors_groups_error_records_of_runs_by_code_and_node(
        rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "boom_nodes.py").write_text(NODES)
    spec = tmp_path / "boom.yaml"
    spec.write_text(SPEC)
    timelines = []
    for i in range(2):
        tl = tmp_path / f"t{i}.jsonl"
        res = rspp_cli("run", str(spec), "--input", str(spoken["question"]),
                       "--timeline", str(tl), "--json")
        assert res.returncode == 0, res.stderr
        [turn] = json.loads(res.stdout)["turns"]
        assert turn["terminal"] == "abort", turn
        timelines.append(str(tl))
    res = rspp_cli("timeline", "errors", *timelines, "--json")
    assert res.returncode == 1, res.stderr  # errors present
    doc = json.loads(res.stdout)
    assert doc["total"] == 2
    [group] = doc["errors"]
    assert group["error_code"] == "runtime_internal_error" and group["node_id"] == "boom"
    assert group["count"] == 2 and group["turns"] == 2 and group["aborted_turns"] == 2
    assert group["retryable"] is False and group["default_action"] == "dead_letter"
    table = rspp_cli("timeline", "errors", *timelines)
    assert table.returncode == 1
    assert "runtime_internal_error" in table.stdout and "dead_letter" in table.stdout
    clean = rspp_cli("timeline", "errors", str(tmp_path / "missing.jsonl"))
    assert clean.returncode == 2 and "file not found" in clean.stderr
