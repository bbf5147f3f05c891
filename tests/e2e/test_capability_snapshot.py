"""Capability discovery frozen in the turn plan, through ``rspp serve`` and ``rspp run`` (F-161).

At turn start the plan resolver captures the transport's capabilities (codec, sample
rates, duplex/barge-in, playback marks) and those of each bound provider (streaming,
languages, voices, max input) from the real adapters, and freezes them in the
``ResolvedTurnPlan`` as ``capability:*`` nondeterministic inputs (the reference schema
closes the plan; see docs/capabilities.md). A client that reconnects with another audio
format changes a capability mid-session: the next turn's plan records the new value, the
earlier turn's plan keeps the old one. ``rspp contracts validate`` decodes every snapshot
and names a broken one by its field path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient
from rspp.contracts import ProviderCapabilities, TransportCapabilities, plan_capabilities

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServedChat

pytestmark = pytest.mark.e2e

KEY = "capability-e2e-admin-key"
REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _plans(timeline: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in timeline.read_text().splitlines() if x.strip()]
    return [ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan"]


def test_a_reconnect_with_another_rate_changes_the_next_turns_frozen_capabilities(
    served_chat: Callable[..., ServedChat], rspp_cli: RsppCli, closed_turn: Callable[..., Any]
) -> None:
    chat = served_chat(KEY)
    srv = chat.srv

    async def talk() -> tuple[str, list[str]]:
        target = await chat.route()
        first = await LiveClient.connect(target.url, token=target.token, sample_rate=16000)
        turns = [await closed_turn(first, "what is your name")]
        await first.close()  # a disconnect: the session waits for a resume
        again = await LiveClient.connect(target.url, token=target.token, sample_rate=24000,
                                         output_sample_rate=48000)
        assert again.ready.resumed
        turns.append(await closed_turn(again, "what is the weather"))
        await again.end()
        async for _ in again.events():
            pass
        return target.session_id, turns

    sid, turns = asyncio.run(asyncio.wait_for(talk(), 120))
    code, _, err = srv.terminate()
    assert code == 0, err
    timeline = chat.timeline(sid)
    plans = {p["turn_id"]: p for p in _plans(timeline)}
    caps = [plan_capabilities(plans[t]) for t in turns]
    before, after = (c["capability:transport"] for c in caps)
    assert isinstance(before, TransportCapabilities) and isinstance(after, TransportCapabilities)
    assert (before.transport, before.codec, before.input_sample_rate_hz,
            before.output_sample_rate_hz) == ("websocket", "pcm_s16le", 16000, 16000)
    assert (after.input_sample_rate_hz, after.output_sample_rate_hz) == (24000, 48000)
    assert before.full_duplex and before.barge_in and not before.playback_marks
    assert before.sample_rates == (16000, 24000, 48000)
    llm = caps[0]["capability:provider:llm"]
    assert isinstance(llm, ProviderCapabilities)
    assert (llm.provider_id, llm.kind, llm.streaming) == ("local", "llm", True)
    assert plans[turns[0]]["plan_hash"] != plans[turns[1]]["plan_hash"]
    res = rspp_cli("contracts", "validate", str(timeline))
    assert res.returncode == 0 and "valid" in res.stdout, res.stdout + res.stderr


def test_rspp_run_freezes_transport_and_provider_capabilities_and_validate_checks_them(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    tl = tmp_path / "timeline.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--timeline", str(tl))
    assert res.returncode == 0, res.stderr
    (plan,) = _plans(tl)
    caps = plan_capabilities(plan)
    assert set(caps) == {"capability:transport", "capability:provider:stt",
                         "capability:provider:llm", "capability:provider:tts"}
    transport, tts = caps["capability:transport"], caps["capability:provider:tts"]
    assert isinstance(transport, TransportCapabilities)
    assert (transport.transport, transport.input_sample_rate_hz) == ("loopback", 16000)
    assert isinstance(tts, ProviderCapabilities)
    assert (tts.provider_id, tts.voices[0], tts.incremental_input) == ("espeak", "en-us", True)
    ok = rspp_cli("contracts", "validate", str(tl))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # a snapshot that lost a field: the validator names the input's evidence_ref
    lines = tl.read_text().splitlines()
    bad = []
    for line in lines:
        data = json.loads(line)
        if data["kind"] == "resolved_turn_plan":
            for item in data["record"]["determinism"]["nondeterministic_inputs"]:
                if item["input_key"] == "capability:transport":
                    item["evidence_ref"] = item["evidence_ref"].replace('"codec":"pcm_s16le",',
                                                                        "")
        bad.append(json.dumps(data))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(bad) + "\n")
    res = rspp_cli("contracts", "validate", str(broken))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "evidence_ref: capability:transport: Object missing required field `codec`" \
        in res.stdout, res.stdout
