"""An LLM provider that fails for good aborts the turn ``provider_error`` (T10, F-131, F-160).

``rspp run`` on the voice assistant whose LLM is the OpenAI adapter pointed at
:class:`~rspp.testing.fakes.FakeOpenAI` (real HTTP on loopback) answering every request
500 ``server_error``. The invocation controller retries and records ``provider_error``
(RK-11) per attempt; the LLM node's failure is then the taxonomy's ``provider_error``
(not ``runtime_internal_error``: nothing in the runtime broke), its event is
dead-lettered, and the turn ends ``abort(provider_error)``, ``close``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeOpenAI, Fault, serve_asgi

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

SPEC = voice_assistant_spec("llm500", head="profile: simple/v1", vad="params: {engine: energy}",
                            providers="""\
  stt: {primary: pocketsphinx, timeout_ms: 30000}
  llm:
    primary: openai
    timeout_ms: 30000
    config: {api_key: "env://RSPP_E2E_LLM500_KEY", base_url: "%s/v1", model: fake,
             retry: {max_retries: 1, initial_ms: 10, max_ms: 20}}
  tts: {primary: espeak, timeout_ms: 30000}""",
                            buffers={"stt.audio": "{max_queue_ms: 60000, max_queue_items: 100000}",
                                     "stt.vad": "{max_queue_ms: 60000}"})


async def test_an_llm_answering_500_aborts_the_turn_with_provider_error(
        spoken: dict[str, Path], tmp_path: Path) -> None:
    fake = FakeOpenAI(api_key="sk-e2e-500")
    fake.faults.sticky = Fault("status", status=500)
    tl = tmp_path / "t.jsonl"
    async with serve_asgi(fake.app) as url:
        spec = tmp_path / "llm500.yaml"
        spec.write_text(SPEC % url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from rspp.cli import main; main()", "run", str(spec),
            "--input", str(spoken["question"]), "--timeline", str(tl), "--json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
            env={**os.environ, "RSPP_E2E_LLM500_KEY": "sk-e2e-500"})
        out_b, err_b = await asyncio.wait_for(proc.communicate(), timeout=240)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, out + err
    assert len(fake.requests) == 2, "the first attempt and its one retry"
    [turn] = json.loads(out)["turns"]
    assert (turn["terminal"], turn["reason"]) == ("abort", "provider_error"), turn
    assert "weather" in turn["transcript"], turn

    lines = [json.loads(x) for x in tl.read_text().splitlines()]
    signals = [ln["record"] for ln in lines if ln["kind"] == "control_signal"]
    mine = [s for s in signals if s.get("turn_id") == turn["turn_id"]]
    assert [s["reason"] for s in mine if s["signal"] == "abort"] == ["provider_error"]
    assert [s["signal"] for s in mine if s["signal"] in ("commit", "abort", "close")] == [
        "abort", "close"]
    errors = [s for s in signals if s["signal"] == "provider_error"]
    assert len(errors) == 2 and all(s["emitted_by"] == "RK-11" for s in errors), errors
    assert all("outcome=internal" in s["reason"] for s in errors), errors
    # the turn's scope is cancelled with the same reason, and the error record names it
    cancels = [s for s in mine if s["signal"] == "cancel" and s.get("scope") == "turn"]
    assert [c["reason"].split(":")[0] for c in cancels] == ["provider_error"], cancels
    [error] = [ln["record"] for ln in lines if ln["kind"] == "event_record"
               and ln["record"]["lane"] == "TelemetryLane" and ln["record"].get("node_id") == "llm"
               and ln["record"].get("reason") in ("provider_error", "runtime_internal_error")]
    assert error["reason"] == "provider_error" and error["turn_id"] == turn["turn_id"], error
    [evidence] = [ln["record"] for ln in lines if ln["kind"] == "or02_evidence"]
    assert (evidence["terminal_signal"], evidence["abort_reason"]) == ("abort", "provider_error")
    # F-160 on a running session: each failed invocation in the evidence, outcome normalised
    invs = evidence["provider_invocations"]
    assert [(i["modality"], i["outcome"]) for i in invs] == [
        ("stt", "success"), ("llm", "internal"), ("llm", "internal")], invs
    assert len({i["provider_invocation_id"] for i in invs}) == 3, invs
