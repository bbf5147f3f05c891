"""F-165 through the CLI: `rspp cp serve --require-approval` refuses a direct rollout; the
change is submitted, approved by another key and applied with `rspp cp change`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer, RsppCli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
ADMIN = "review-admin-key"


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_rollout_applies_only_as_a_change_another_key_approved(
    cp_serve: Callable[..., ControlPlaneServer], rspp_cli: RsppCli, tmp_path: Path,
) -> None:
    cp = rspp_cli.cp
    url = cp_serve("sqlite", ADMIN, "--require-approval").url
    keys = [cp("keys", "create", "--role", "operator", key=ADMIN, server=url)
            for _ in range(2)]
    author, reviewer = (k.stdout.strip().splitlines()[-1] for k in keys)
    assert cp("publish", str(VOICE), key=author, server=url).returncode == 0
    v2 = tmp_path / "v2.yaml"
    v2.write_text(VOICE.read_text().replace("version: 1.0.0", "version: 2.0.0"))
    assert cp("publish", str(v2), key=author, server=url).returncode == 0

    direct = cp("rollout", "voice-assistant", "--canary", "2.0.0", "--percent", "10",
                key=author, server=url)
    assert direct.returncode == 1 and "approval_required" in direct.stderr
    change = ok(cp("change", "submit", "rollout", "--pipeline", "voice-assistant",
                   "--canary", "2.0.0", "--percent", "10", "--reason", "new voice",
                   key=author, server=url))
    cid = change["change_id"]
    early = cp("change", "apply", cid, key=author, server=url)
    assert early.returncode == 1 and "pending" in early.stderr
    own = cp("change", "approve", cid, key=author, server=url)
    assert own.returncode == 1 and "self_review" in own.stderr
    assert ok(cp("change", "approve", cid, "--note", "ok", key=reviewer,
                 server=url))["status"] == "approved"
    assert ok(cp("change", "apply", cid, key=author, server=url))["status"] == "applied"
    rollout = httpx.get(f"{url}/v1/pipelines/voice-assistant/rollout",
                        headers={"Authorization": f"Bearer {author}"}).json()["rollout"]
    assert (rollout["canary_version"], rollout["percent"]) == ("2.0.0", 10.0)
    [listed] = ok(cp("change", "list", "--status", "applied", key=author, server=url))["changes"]
    assert (listed["reason"], listed["review_note"]) == ("new voice", "ok")
    audit = cp("audit", key=ADMIN, server=url).stdout
    for action in ("change.blocked", "change.submitted", "change.approved", "change.applied"):
        assert action in audit
