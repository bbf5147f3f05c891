"""Sync-group drop policies on a spec edge of a running session (F-146), via ``rspp run``.

A custom inline node turns each final transcript into a burst of six events in three
sync groups (``g1 g1 g2 g2 g3 g3``, one ``sync_id`` per group) for an async sink behind
an edge of two items (``strategy: drop``). The burst is routed in one go, so the edge
overflows the same way on every run; its ``sync_drop_policy`` decides what is lost:

* ``atomic_drop``: a group loses all its events together (``sync_group_dropped``), the
  sink gets only whole groups;
* ``drop_with_discontinuity``: single events go, each loss is a ``discontinuity`` signal
  naming the group and the edge's sync domain.
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


    class Burst(Node):
        """Each final transcript becomes three sync groups of two events."""
        inputs = ("text",)
        outputs = ("out",)
        port_types = {"text": "text", "out": "text"}

        def process(self, event: Event, port: str):
            if event.kind != "text" or not event.final:
                return None
            for group in ("g1", "g1", "g2", "g2", "g3", "g3"):
                out = event.derive("text", group, final=True)
                out.sync_id = group
                self.ctx.emit(out, "out")
            return None


    class Sink(Node):
        """Records what it takes."""
        inputs = ("in",)
        outputs = ("out",)
        port_types = {"in": "text", "out": "text"}

        async def process(self, event: Event, port: str):
            self.ctx.audit("took:" + str(event.payload))
            return None
''')

#: ``%s``: the sync drop policy of the edge from the burst to the sink
SPEC = voice_assistant_spec(
    "sync-groups", stt=DOMAIN_STT, vad=SILENCE_VAD, reply=False,
    nodes=['{id: burst, type: "python:sync_nodes:Burst"}',
           '{id: sink, type: "python:sync_nodes:Sink"}'],
    edges=["{from: stt.final, to: burst.text}", """from: burst.out
    to: sink.in
    buffer:
      strategy: drop
      max_queue_items: 2
      sync_drop_policy: {policy: %s, scope: edge_local, group_by: sync_id,
                         sync_domain: captions}"""])


def _run(rspp_cli: RsppCli, wav: Path, tmp_path: Path, policy: str
         ) -> tuple[list[str], list[dict[str, Any]]]:
    (tmp_path / "sync_nodes.py").write_text(NODES)
    spec, timeline = tmp_path / f"{policy}.yaml", tmp_path / f"{policy}.jsonl"
    spec.write_text(SPEC % policy)
    res = rspp_cli.run(str(spec), "--input", str(wav), "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    took = [r["reason"].removeprefix("took:") for r in records
            if str(r.get("reason", "")).startswith("took:")]
    signals = [r for r in records if r.get("signal") in ("drop_notice", "discontinuity")
               and r.get("edge_id") == "burst.out->sink.in"]
    return took, signals


def test_atomic_drop_loses_whole_groups_on_a_spec_edge(
        rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path) -> None:
    took, signals = _run(rspp_cli, spoken["question"], tmp_path, "atomic_drop")
    assert took == ["g3", "g3"]  # g1 and g2 went whole, never half a group
    reasons = {r["reason"] for r in signals if r["signal"] == "drop_notice"}
    assert "sync_group_dropped" in reasons, signals
    assert not [r for r in signals if r["signal"] == "discontinuity"]


def test_drop_with_discontinuity_marks_each_loss_on_a_spec_edge(
        rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path) -> None:
    took, signals = _run(rspp_cli, spoken["question"], tmp_path, "drop_with_discontinuity")
    assert len(took) == 2 and took[-1] == "g3"  # single events were lost, not groups
    marks = [r for r in signals if r["signal"] == "discontinuity"]
    assert len(marks) == 4, signals  # six events, two kept
    assert {r["sync_domain"] for r in marks} == {"captions"}
    assert [r["sync_id"] for r in marks] == ["g1", "g1", "g2", "g2"]
    assert not [r for r in signals if r.get("reason") == "sync_group_dropped"]
