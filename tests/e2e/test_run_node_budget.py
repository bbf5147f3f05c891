"""A node's processing budget through ``rspp run`` (F-045).

The offline assistant with a custom node between the sentence segmenter and the TTS
that never finishes a sentence (a node stuck in its work). The spec gives it a 300 ms
budget per event (``timeout_ms``) and a fallback node (a passthrough) on ``timeout``.
Every event (the sentences and the end of the reply) exceeds the budget: the kernel
stops the node's work, records a timeout error (``provider_timeout`` of that node) and a
``fallback`` signal (RK-17) naming both nodes, and the event reaches the TTS through the
fallback, in order: the reply is whole and the turn commits. The same spec without the
fallback leaves the events to the dead-letter stream: the reply has no audio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rspp.testing import voice_assistant_spec

pytestmark = pytest.mark.e2e

STUCK = textwrap.dedent('''
    import asyncio

    from rspp import Event, Node


    class Stuck(Node):
        """Polishes reply sentences, but never finishes one (stuck on its work)."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}

        async def process(self, event: Event, port: str) -> Event | None:
            await asyncio.Event().wait()  # only the node budget ends this
            return event
''')

def _spec(fallback: bool) -> str:
    """The reply's sentences pass the stuck node; with ``fallback`` a passthrough node
    carries them to the TTS when it times out."""
    on_timeout = ", fallback: {node: plain, on: [timeout]}" if fallback else ""
    return voice_assistant_spec(
        "node-budget", before_tts=f'{{id: polish, type: "python:slow_nodes:Stuck", '
                                  f'timeout_ms: 300{on_timeout}}}',
        nodes=["{id: plain, type: passthrough}"] if fallback else [],
        edges=["{from: plain.out, to: tts.text}"] if fallback else [])



def _run(tmp: Path, question: Path, name: str, fallback: bool
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    spec, tl = tmp / f"{name}.yaml", tmp / f"{name}.jsonl"
    spec.write_text(_spec(fallback))
    res = subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", "run",
                          str(spec), "--input", str(question), "--timeline", str(tl), "--json"],
                         capture_output=True, text=True, timeout=180, check=False, cwd=tmp,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout), [json.loads(x)["record"] for x in tl.read_text().splitlines()]


def test_a_node_over_its_budget_is_stopped_and_its_fallback_carries_the_turn(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "slow_nodes.py").write_text(STUCK)
    out, records = _run(tmp_path, spoken["question"], "fallback", True)
    (turn,) = out["turns"]
    assert turn["terminal"] == "commit", turn
    assert turn["reply"].startswith("I cannot check the weather"), turn
    assert turn["played_s"] > 1.0
    timeouts = [r for r in records if r.get("lane") == "TelemetryLane"
                and ":error:" in r["event_id"] and r.get("node_id") == "polish"]
    fallbacks = [r for r in records if r.get("signal") == "fallback"]
    assert len(timeouts) >= 2, timeouts  # the sentence and the end of the reply
    assert all(r["reason"] == "provider_timeout" for r in timeouts), timeouts
    assert len(fallbacks) == len(timeouts)  # one fallback activation per timed-out event
    for fb in fallbacks:
        assert fb["reason"] == "provider_timeout:polish->plain" and fb["emitted_by"] == "RK-17"
        assert fb["node_id"] == "polish" and fb["turn_id"] == turn["turn_id"]
    assert not out["dead_letters"]

    # without the fallback the budget still stops the node: its sentences are dead letters
    bare, bare_records = _run(tmp_path, spoken["question"], "bare", False)
    (lost,) = bare["turns"]
    assert lost["played_s"] == 0.0 and bare["dead_letters"], bare
    assert all(d.startswith("polish:provider_timeout:") for d in bare["dead_letters"])
    assert not [r for r in bare_records if r.get("signal") == "fallback"]
