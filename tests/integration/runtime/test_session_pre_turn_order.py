"""Pre-turn checks in the truth table's order, in a session assembled as ``rspp run`` does.

A proposal (the end-of-utterance hook the VAD calls) meets stale turn-start snapshots *and* a
revoked lease: T2 (snapshot check, ``defer snapshot_stale:*``) comes before T3/T4, so
the refusal is the snapshot's and no ``deauthorized_drain`` is recorded. With fresh
snapshots the same revoked lease gives T4.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from rspp.runner._assembly import AssemblyOptions, assemble_session, compile_spec_file
from rspp.runner._bundle import LOCAL_TENANT, local_bundle
from rspp.transports import LoopbackOptions, LoopbackTransport
from rspp.turns._snapshot_source import StaticSnapshotSource

pytestmark = pytest.mark.integration

VOICE = Path(__file__).resolve().parents[3] / "pipelines" / "examples" / "voice_assistant.yaml"
RATE = 16000


async def _proposal_records(stale: bool) -> list[dict[str, object]]:
    gd = compile_spec_file(VOICE)
    now = 0 if stale else 4_000_000_000_000
    bundle = local_bundle(gd, now_ms=now, ttl_ms=1 if stale else 10**12, tenant_id=LOCAL_TENANT)
    records: list[msgspec.Struct] = []
    opts = AssemblyOptions(snapshots=StaticSnapshotSource(bundle),
                           admission_policy=bundle.admission_policy, file_source=True,
                           record_tap=records.append)
    assembled = assemble_session(gd, opts, lambda record: LoopbackTransport(
        bytes(2 * RATE), RATE, LoopbackOptions(), record=record))
    await assembled.start()
    try:
        assembled.authority_changed(None, "lease_revoked")  # before any proposal
        # what the VAD calls at an end of utterance: the session's proposal path
        assembled.driver.end_of_utterance("push_to_talk")
        assert await assembled.driver.turn_for_utterance() is None  # refused
    finally:
        await assembled.finish()
    return [msgspec.to_builtins(r) for r in records]


def _pre_turn(records: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(r.get("outcome_kind"), r.get("reason")) for r in records
            if r.get("phase") == "pre_turn" and r.get("outcome_kind") != "admit"]


def test_stale_snapshots_refuse_before_the_revoked_lease() -> None:
    records = asyncio.run(_proposal_records(stale=True))
    refusals = _pre_turn(records)
    assert refusals and refusals[0][0] == "defer"
    assert str(refusals[0][1]).startswith("snapshot_stale:")
    assert not [r for r in records if r.get("outcome_kind") == "deauthorized_drain"]
    assert not [r for r in records if r.get("signal") == "turn_open"]


def test_fresh_snapshots_reach_the_authority_check() -> None:
    records = asyncio.run(_proposal_records(stale=False))
    assert [k for k, _ in _pre_turn(records)][:1] == ["deauthorized_drain"]
    assert not [r for r in records if r.get("signal") == "turn_open"]
