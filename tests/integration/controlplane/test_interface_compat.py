"""Publish-time compatibility of a pipeline's event interface (F-028): a version that
removes an output port or changes a payload type is refused, listing each breaking path,
unless its major version goes up; new ports are additive."""

from __future__ import annotations

import httpx
import pytest

from rspp.controlplane import Conflict, ControlPlane, Role, create_app

from .conftest import ADMIN, OPERATOR, VIEWER, spec_version

pytestmark = pytest.mark.integration

TRANSCRIPT_EDGE = "  - {from: stt.final, to: output.transcript}             # final transcript\n"


def _without_transcript(version: str) -> str:
    text = spec_version(version)
    assert TRANSCRIPT_EDGE in text
    return text.replace(TRANSCRIPT_EDGE, "")


async def test_a_breaking_interface_change_needs_a_major_bump(cp: ControlPlane) -> None:
    await cp.publish(OPERATOR, spec_version("1.0.0"))
    with pytest.raises(Conflict) as refused:
        await cp.publish(OPERATOR, _without_transcript("1.1.0"))
    err = refused.value
    assert err.code == "incompatible_change"
    assert err.field == "outputs.transcript", err.field
    assert "breaks the event interface of 1.0.0" in err.message and "2.0.0" in err.message
    versions = [r.version for r in await cp.list_pipelines(VIEWER, "voice-assistant")]
    assert versions == ["1.0.0"]
    entries = [e for e in (await cp.audit_entries(VIEWER)) if e.action == "publish.incompatible"]
    assert len(entries) == 1 and entries[0].subject == "voice-assistant@1.1.0"
    # compatible versions publish: the same interface, then a major bump that drops the port
    assert (await cp.publish(OPERATOR, spec_version("1.1.0", description="same ports")))[1]
    assert (await cp.publish(OPERATOR, _without_transcript("2.0.0")))[1]
    # restoring a port is additive
    assert (await cp.publish(OPERATOR, spec_version("2.1.0")))[1]


async def test_the_http_api_answers_409_naming_the_breaking_path(cp: ControlPlane) -> None:
    transport = httpx.ASGITransport(app=create_app(cp))
    async with httpx.AsyncClient(transport=transport, base_url="http://cp") as http:
        headers = {"Authorization": f"Bearer {await _operator_key(cp)}"}
        ok = await http.post("/v1/pipelines", json={"spec": spec_version("1.0.0")},
                             headers=headers)
        assert ok.status_code == 201, ok.text
        bad = await http.post("/v1/pipelines", json={"spec": _without_transcript("1.0.1")},
                              headers=headers)
    assert bad.status_code == 409
    error = bad.json()["error"]
    assert error["code"] == "incompatible_change"
    assert "outputs.transcript" in error["message"]


async def _operator_key(cp: ControlPlane) -> str:
    _, secret = await cp.create_key(ADMIN, Role.OPERATOR, None)
    return secret
