"""A runtime's token keys after signing-key rotations (F-169): the runtime fetches the
control plane's verification keys again when a token names a key it does not know, at most
once a second, and a token arriving within that second waits for the next fetch instead of
being refused, so two rotations in quick succession are both followed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest

from rspp.server import LinkOptions
from rspp.server._cplink import ControlPlaneLink, SessionRefused

if TYPE_CHECKING:
    from tests.integration.server.conftest import PlaneRig

pytestmark = pytest.mark.integration

ADMIN = "admin-key-for-token-key-refresh"
VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_tokens_of_two_quick_rotations_are_verified_after_waiting_for_a_fetch(
    plane_rig: PlaneRig,
) -> None:
    cp = await plane_rig.plane(ADMIN, token_key_dir=str(plane_rig.directory / "keys"))
    admin = plane_rig.client(cp, ADMIN)
    await admin.publish(VOICE, "voice_assistant.yaml")
    link = ControlPlaneLink(admin, LinkOptions(runtime_id="rt-a", endpoint="ws://rt-a"))
    await link.connect()
    await admin.heartbeat("rt-a", health="healthy", load=0)
    assert link.key_fetches == 1
    kids = set()
    for turn in range(2):  # two rotations, each followed at once by a token of the new key
        await admin.request("POST", "/v1/tokens/keys/rotate", json={"reason": f"r{turn}"})
        route = await admin.route("acme", "voice-assistant")
        token, sid = route["token"], route["session_id"]
        kids.add(_kid(token))
        with pytest.raises(SessionRefused) as unknown:
            link.verify(token, sid)
        assert unknown.value.code == "token_key_unknown"
        # the second refresh comes well within a second of the first fetch: it waits
        assert await link.refresh_keys() is True
        assert link.verify(token, sid).session_id == sid
    assert len(kids) == 2 and link.key_fetches == 3
