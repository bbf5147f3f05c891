"""Registry (CP-01): publish/list/get, immutability, several live versions, subgraphs."""

from __future__ import annotations

import pytest

from rspp.controlplane import Conflict, ControlPlane, Forbidden, InvalidRequest, NotFound

from .conftest import OPERATOR, SHOWCASE_SPEC, TRANSCRIBE_MODULE, VIEWER, spec_version

pytestmark = pytest.mark.integration


async def test_publish_list_get_with_metadata_f092(cp: ControlPlane) -> None:
    record, created = await cp.publish(OPERATOR, spec_version("1.0.0"), filename="va.yaml")
    assert created and record.name == "voice-assistant" and record.version == "1.0.0"
    assert len(record.spec_hash) == 64 and record.author == "test-operator"
    listed = await cp.list_pipelines(VIEWER)
    assert [(r.name, r.version) for r in listed] == [("voice-assistant", "1.0.0")]
    got = await cp.get_pipeline(VIEWER, "voice-assistant", "1.0.0")
    assert got.spec_hash == record.spec_hash and got.created_at_ms == record.created_at_ms
    assert got.spec_text == spec_version("1.0.0")
    with pytest.raises(NotFound) as missing:
        await cp.get_pipeline(VIEWER, "voice-assistant", "9.9.9")
    assert missing.value.field == "name"


async def test_published_version_is_immutable_and_versions_coexist_f015_f016(
    cp: ControlPlane,
) -> None:
    v1, _ = await cp.publish(OPERATOR, spec_version("1.0.0"))
    again, created = await cp.publish(OPERATOR, spec_version("1.0.0"))
    assert not created and again.spec_hash == v1.spec_hash  # identical content: idempotent
    with pytest.raises(Conflict) as refused:
        await cp.publish(OPERATOR, spec_version("1.0.0", description="changed in place"))
    assert refused.value.field == "version" and "immutable" in refused.value.message
    v2, _ = await cp.publish(OPERATOR, spec_version("2.0.0", description="second"))
    versions = {r.version: r.spec_hash for r in await cp.list_pipelines(VIEWER, "voice-assistant")}
    assert versions == {"1.0.0": v1.spec_hash, "2.0.0": v2.spec_hash}
    assert (await cp.get_pipeline(VIEWER, "voice-assistant", "1.0.0")).spec_hash == v1.spec_hash


async def test_invalid_spec_is_refused_with_field(cp: ControlPlane) -> None:
    broken = spec_version("1.0.0").replace("type: stt", "type: no_such_node", 1)
    with pytest.raises(InvalidRequest) as err:
        await cp.publish(OPERATOR, broken)
    assert err.value.field and "nodes" in err.value.field


async def test_misspelt_field_is_refused_not_silently_dropped(cp: ControlPlane) -> None:
    """A typo such as ``budgets.turn_budget_ms`` must not publish a spec without the budget."""
    typo = spec_version("1.0.0").replace(
        "\nnodes:", "\nbudgets:\n  turn_budget_ms: 1500\nnodes:", 1
    )
    assert "turn_budget_ms" in typo
    with pytest.raises(InvalidRequest) as err:
        await cp.publish(OPERATOR, typo)
    assert err.value.field == "budgets.turn_budget_ms"
    assert "unknown field 'turn_budget_ms'" in err.value.message
    assert await cp.list_pipelines(VIEWER) == []
    fixed, created = await cp.publish(OPERATOR, typo.replace("turn_budget_ms", "turn_ms"))
    assert created and fixed.version == "1.0.0"


async def test_viewer_cannot_publish_and_denial_is_audited_f115(cp: ControlPlane) -> None:
    with pytest.raises(Forbidden) as denied:
        await cp.publish(VIEWER, spec_version("1.0.0"))
    assert "operator" in denied.value.message
    entries = await cp.audit_entries(VIEWER)
    assert [(e.action, e.actor, e.subject) for e in entries] == [
        ("rbac.denied", "test-viewer", "publish pipeline")
    ]
    assert await cp.list_pipelines(VIEWER) == []


async def test_subgraph_modules_resolved_and_pinned_at_publish_f019(cp: ControlPlane) -> None:
    with pytest.raises(InvalidRequest) as missing:
        await cp.publish(OPERATOR, SHOWCASE_SPEC)
    assert missing.value.field == "subgraphs" and "transcribe@1.0.0" in missing.value.message
    module, _ = await cp.publish_module(OPERATOR, TRANSCRIBE_MODULE)
    showcase, _ = await cp.publish(OPERATOR, SHOWCASE_SPEC)
    assert showcase.modules == {"transcribe@1.0.0": module.content_hash}
    # A second pipeline references the same module.
    other = spec_version("1.0.0", SHOWCASE_SPEC).replace("name: showcase", "name: showcase-b", 1)
    other_rec, _ = await cp.publish(OPERATOR, other)
    assert other_rec.modules == showcase.modules
    # Updating the module is a new version, applied intentionally by a new pipeline version.
    m2_text = TRANSCRIBE_MODULE.replace("version: 1.0.0", "version: 1.1.0").replace(
        "description: Speech", "description: Newer speech"
    )
    module2, _ = await cp.publish_module(OPERATOR, m2_text)
    with pytest.raises(Conflict):
        await cp.publish_module(OPERATOR, TRANSCRIBE_MODULE.replace("Speech", "Changed"))
    v2 = spec_version("2.0.0", SHOWCASE_SPEC).replace("transcribe@1.0.0", "transcribe@1.1.0")
    showcase2, _ = await cp.publish(OPERATOR, v2)
    assert showcase2.modules == {"transcribe@1.1.0": module2.content_hash}
    pinned = await cp.get_pipeline(VIEWER, "showcase", "1.0.0")
    assert pinned.modules == {"transcribe@1.0.0": module.content_hash}
    actions = [e.action for e in await cp.audit_entries(VIEWER)]
    assert actions.count("module.publish") == 2 and actions.count("pipeline.publish") == 3
