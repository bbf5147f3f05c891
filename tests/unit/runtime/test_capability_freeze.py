"""Capabilities captured at turn start are frozen in that turn's plan (F-161).

The real capability source of an assembled session (:class:`SessionCapabilities`) reads
a real live transport and a real espeak TTS adapter; the plan resolver freezes what they
say into the plan's ``capability:*`` inputs. A change of the transport's connection after
the plan was resolved (a client reconnecting with another rate, mid-turn) leaves that plan
as it was; the next turn's plan records the new value and hashes differently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.contracts import (
    ProviderCapabilities,
    TransportCapabilities,
    capability_issues,
    plan_capabilities,
    to_builtins,
)
from rspp.kernel._clock import VirtualClock
from rspp.nodes import build_provider
from rspp.runner._bundle import LOCAL_RUNTIME_ID, local_bundle
from rspp.runner._capabilities import SessionCapabilities
from rspp.spec import compile_spec, load_spec
from rspp.transports import LiveTransport
from rspp.turns._plan_resolver import PlanResolver, compute_plan_hash
from rspp.turns._snapshot_source import StaticSnapshotSource

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
NOW = 1_700_000_000_000


async def test_a_capability_change_mid_turn_applies_at_the_next_turn() -> None:
    graph = compile_spec(load_spec(EXAMPLE))
    clock = VirtualClock(start_wall_ms=NOW)
    resolver = PlanResolver(graph, StaticSnapshotSource(local_bundle(graph, now_ms=NOW)),
                            clock, runtime_id=LOCAL_RUNTIME_ID)
    transport = LiveTransport(16000)
    tts = build_provider("espeak", {"voice": "en-gb"}, modality="tts")
    resolver.capabilities = SessionCapabilities(transport, {"espeak": tts})
    transport.connect(16000, 16000, sequenced=False)
    try:
        first = await resolver.resolve(tenant_id="local", session_id="s", turn_id="t1",
                                       authority_epoch=1)
        assert first.plan is not None
        before = to_builtins(first.plan)
        # mid-turn: the client reconnects with another rate and starts echoing marks
        transport.connect(24000, 48000, sequenced=False, acked=True, transport="telephony")
        assert to_builtins(first.plan) == before  # the open turn's plan is untouched
        second = await resolver.resolve(tenant_id="local", session_id="s", turn_id="t2",
                                        authority_epoch=1)
        assert second.plan is not None
    finally:
        transport.disconnect()
        await transport.aclose()
    old = plan_capabilities(before)["capability:transport"]
    new = plan_capabilities(to_builtins(second.plan))["capability:transport"]
    assert isinstance(old, TransportCapabilities) and isinstance(new, TransportCapabilities)
    assert (old.transport, old.codec, old.input_sample_rate_hz, old.playback_marks) == (
        "websocket", "pcm_s16le", 16000, False)
    assert (new.transport, new.codec, new.input_sample_rate_hz, new.output_sample_rate_hz,
            new.playback_marks) == ("telephony", "mulaw", 24000, 48000, True)
    voice = plan_capabilities(before)["capability:provider:tts"]
    assert isinstance(voice, ProviderCapabilities)
    assert (voice.provider_id, voice.voices, voice.streaming) == ("espeak", ("en-gb",), True)
    assert "capability:provider:stt" not in plan_capabilities(before)  # no adapter given
    assert first.plan.plan_hash == compute_plan_hash(first.plan)
    assert first.plan.plan_hash != second.plan.plan_hash
    assert capability_issues(before) == []


def test_a_snapshot_that_does_not_decode_is_named_by_its_path() -> None:
    plan = {"determinism": {"nondeterministic_inputs": [
        {"input_key": "turn_start_wall_ms", "source": "system_time", "evidence_ref": "wall_ms:1"},
        {"input_key": "capability:provider:tts", "source": "other",
         "evidence_ref": 'capabilities:{"provider_id":"x","kind":"tts","streaming":"yes",'
                         '"languages":[]}'},
        {"input_key": "capability:modem", "source": "other", "evidence_ref": "capabilities:{}"},
    ]}}
    issues = capability_issues(plan)
    assert [i.path for i in issues] == [
        "determinism.nondeterministic_inputs.1.evidence_ref",
        "determinism.nondeterministic_inputs.2.evidence_ref"]
    assert "Expected `bool`, got `str` - at `$.streaming`" in issues[0].message
    assert "unknown capability kind 'modem'" in issues[1].message
    assert plan_capabilities(plan) == {}
