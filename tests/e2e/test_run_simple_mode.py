"""Simple mode end to end (F-079): a template-only spec runs through the local runner.

The spec names only the template and the providers; the same turn yields a final
transcript and a spoken reply, and it commits while the turn budget is enforced
(`--real-time` runs enforce the simple/v1 turn budget; an overrun would end the
turn with ``abort(budget_exhausted)`` instead of ``commit``).
"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.spec import load_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

SIMPLE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "simple_mode.yaml"


def test_template_only_spec_answers_within_the_turn_budget(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    spec = load_spec(SIMPLE, strict=True)
    assert spec.template == "voice_assistant" and not spec.nodes  # only template + providers
    question = spoken["question"]
    reply, timeline = tmp_path / "reply.wav", tmp_path / "t.jsonl"
    run = rspp_cli.run(str(SIMPLE), "--input", str(question), "--output", str(reply),
               "--timeline", str(timeline), "--real-time")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "weather" in run.stdout.split("transcript:", 1)[1].splitlines()[0]
    with wave.open(str(reply)) as w:
        assert w.getnframes() > 0
    signals = [json.loads(line)["record"] for line in timeline.read_text().splitlines()
               if json.loads(line)["kind"] == "control_signal"]
    terminals = [s["signal"] for s in signals if s["signal"] in ("commit", "abort")]
    assert terminals == ["commit"], terminals
    plans = [json.loads(line)["record"] for line in timeline.read_text().splitlines()
             if json.loads(line)["kind"] == "resolved_turn_plan"]
    assert plans and plans[0]["budgets"]["turn_budget_ms"] == 2000  # simple/v1 default
