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
    # F-078: the profile is named in the plan and every buffer it set says it came from there
    assert plans[0]["execution_profile"] == "simple/v1"
    buffers = plans[0]["edge_buffer_policies"]
    assert buffers and {b["defaulting_source"] for b in buffers.values()} == {
        "execution_profile_default"}


def test_a_post_mvp_profile_is_refused_before_the_session_starts(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    """F-078: `rspp run` refuses `profile: balanced/v1` with one line naming the field."""
    spec = tmp_path / "balanced.yaml"
    spec.write_text(SIMPLE.read_text().replace("template: voice_assistant",
                                               "profile: balanced/v1\ntemplate: voice_assistant"))
    run = rspp_cli.run(str(spec), "--input", str(spoken["question"]))
    assert run.returncode != 0 and "Traceback" not in run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{spec}:6:1: ") and "profile: execution profile 'balanced/v1' is " \
        "post-MVP and not available in this release; use `profile: simple/v1`" in line, line
