"""``unknown_event_action`` through ``rspp run`` and ``rspp lint`` (F-020).

A custom node (``tagger``) emits, for every final transcript, the transcript and an
event of a kind nobody declares (``sentiment``). The next node (``echo``) declares
``input_kinds = {"text": ("text",)}``; what happens to the ``sentiment`` event is the
node's ``unknown_event_action`` (or the pipeline's default):

* ``drop``: a ``drop_notice`` (reason ``unknown_event:sentiment``) and an audit record;
* ``pass_through``: the event reaches ``output.notes`` unprocessed, with an audit record;
* ``fail``: a node error (``schema_validation_error``) in the dead letters.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.testing import DOMAIN_STT, SILENCE_VAD, voice_assistant_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

NODES = textwrap.dedent('''
    from rspp import Event, Node


    class Tagger(Node):
        """Passes the final transcript on and adds a ``sentiment`` event."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}

        def process(self, event: Event, port: str):
            if event.kind != "text" or not event.final:
                return None
            self.ctx.emit(event.derive("sentiment", "neutral", final=True))
            return event


    class Echo(Node):
        """Declares the kinds it reads: text only."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}
        input_kinds = {"text": ("text",)}

        def process(self, event: Event, port: str):
            return event.derive("text", "echo: " + str(event.payload), final=True)
''')

#: ``%(default)s``: the spec's unknown-event action; ``%(node)s``: the echo node's own
SPEC = voice_assistant_spec(
    "unknown-events", head="%(default)s", stt=DOMAIN_STT, vad=SILENCE_VAD,
    stt_nodes=['{id: tagger, type: "python:unknown_nodes:Tagger"}',
               '{id: echo, type: "python:unknown_nodes:Echo"%(node)s}'],
    transcript_edges=["{from: stt.final, to: tagger.text}", "{from: tagger.text, to: echo.text}",
                      "{from: echo.text, to: output.notes}"])


def _spec(tmp_path: Path, *, default: str | None = None, node: str | None = None) -> Path:
    (tmp_path / "unknown_nodes.py").write_text(NODES)
    path = tmp_path / "unknown.yaml"
    path.write_text(SPEC % {
        "default": f"unknown_event_action: {default}" if default else "",
        "node": f", unknown_event_action: {node}" if node else ""})
    return path


def _run(rspp_cli: RsppCli, spec: Path, wav: Path, tmp_path: Path
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tl = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(wav), "--timeline", str(tl), "--json")
    assert res.returncode == 0, res.stderr
    records = [json.loads(x) for x in tl.read_text().splitlines()]
    return json.loads(res.stdout), records


def _audits(records: list[dict[str, Any]]) -> list[str]:
    return [r["record"]["reason"] for r in records
            if str(r["record"].get("reason", "")).startswith("unknown_event_action:")]


@pytest.mark.parametrize(("where", "action"), [("node", "drop"), ("default", "pass_through"),
                                               ("node", "fail")])
def test_unknown_event_action_per_node_and_pipeline_default(
    where: str, action: str, rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path
) -> None:
    spec = _spec(tmp_path, **{where: action})
    out, records = _run(rspp_cli, spec, spoken["question"], tmp_path)
    assert out["turns"] and out["turns"][0]["transcript"]
    assert _audits(records) == [f"unknown_event_action:{action}:sentiment:text"]
    notices = [r["record"] for r in records if r["record"].get("signal") == "drop_notice"
               and r["record"].get("reason") == "unknown_event:sentiment"]
    notes = [r for r in records if r["record"].get("node_id") in ("tagger", "echo")
             and r["kind"] == "event_record" and r["record"].get("lane") == "DataLane"]
    if action == "drop":
        assert [n["edge_id"] for n in notices] == ["echo.text"]
        assert not out.get("dead_letters")
    elif action == "pass_through":
        assert notices == []
        # the sentiment event left unprocessed (node id of its producer), beside the echo
        assert any(r["record"]["node_id"] == "tagger" for r in notes), notes
        assert not out.get("dead_letters")
    else:
        assert notices == []
        assert any("schema_validation_error" in d for d in out["dead_letters"])


def test_lint_rejects_an_unknown_action_naming_the_field(rspp_cli: RsppCli,
                                                         tmp_path: Path) -> None:
    spec = _spec(tmp_path, node="ignore")
    res = rspp_cli("lint", str(spec))
    assert res.returncode != 0
    assert "unknown_event_action" in res.stdout + res.stderr
