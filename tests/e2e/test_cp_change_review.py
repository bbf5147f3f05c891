"""F-165 through the CLI: `rspp cp serve --require-approval` refuses a direct rollout; the
change is submitted, approved by another key and applied with `rspp cp change`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ReviewedCp, RsppCli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ADMIN = "review-admin-key"


def test_a_rollout_applies_only_as_a_change_another_key_approved(
    reviewed_cp: Callable[..., ReviewedCp], rspp_cli: RsppCli,
) -> None:
    cp, ok = rspp_cli.cp, rspp_cli.ok
    url, author, reviewer = reviewed_cp("sqlite", ADMIN, "--require-approval")

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
