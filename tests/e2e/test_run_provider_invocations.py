"""Provider invocations of a running session's turn in its OR-02 evidence (F-160), via ``rspp run``.

The offline assistant answers one question; the turn's ``or02_evidence`` record lists
the turn's STT (opened with the utterance, before the turn), LLM and TTS invocations,
each with its own ``provider_invocation_id``, the provider that served it, a
normalised outcome (``rspp.providers.Outcome``) and, though none was cancelled, its
cancellation scope: the node scope ``<turn>/<node>`` of the node that called it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.providers import Outcome

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_a_turns_evidence_lists_its_stt_llm_and_tts_invocations_with_ids_and_outcomes(
        spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path) -> None:
    timeline = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(REPO / "pipelines" / "examples" / "voice_assistant.yaml"),
                       "--input", str(spoken["question"]), "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    [evidence] = [json.loads(x)["record"] for x in timeline.read_text().splitlines()
                  if json.loads(x)["kind"] == "or02_evidence"]
    invocations = evidence["provider_invocations"]
    # the STT invocation opened with the utterance (before the turn) is the turn it opened's
    assert [(i["modality"], i["provider_id"]) for i in invocations] == [
        ("stt", "pocketsphinx"), ("llm", "local"), ("tts", "espeak")]
    ids = [i["provider_invocation_id"] for i in invocations]
    assert len(set(ids)) == len(ids) and all(i.startswith("pinv-") for i in ids)
    assert all(i["outcome"] in set(Outcome) and i["latency_ms"] >= 0 for i in invocations)
    assert {i["outcome"] for i in invocations} == {Outcome.SUCCESS}
    # each is linked to the cancel scope it ran in: its node's scope under the turn's
    tid = evidence["turn_id"]
    assert [(i["node_id"], i["cancel_scope"]) for i in invocations] == [
        (n, f"{tid}/{n}") for n in ("stt", "llm", "tts")]
