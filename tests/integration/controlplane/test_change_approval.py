"""F-165: with `require_approval`, rollouts, rollbacks and policy activations apply only as
changes another key approved; a blocked attempt and every decision are audited.

Through the ASGI app of a control plane on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import pytest

from .conftest import ChangeApi

pytestmark = pytest.mark.integration

NAME = "voice-assistant"


@pytest.fixture
async def api(change_api: Callable[..., AbstractAsyncContextManager[ChangeApi]],
              ) -> AsyncIterator[ChangeApi]:
    async with change_api(require_approval=True) as opened:
        yield opened


async def test_rollout_is_blocked_until_another_key_approves_and_applies_once(
    api: ChangeApi,
) -> None:
    author, reviewer = await api.key("operator"), await api.key("operator")
    # a direct rollout is refused and the refusal is audited
    blocked = await api.call("POST", f"/v1/pipelines/{NAME}/rollout", author,
                             {"canary": "1.1.0", "percent": 25}, want=403)
    assert blocked["error"]["code"] == "approval_required"
    assert blocked["error"]["field"] == "approval"
    assert (await api.call("GET", f"/v1/pipelines/{NAME}/rollout", author))["rollout"] is None
    [entry] = await api.audit("change.blocked")
    assert entry["subject"] == f"pipeline:{NAME}"
    assert entry["detail"] == {"mutation": "rollout", "reason": "approval_required"}

    change = await api.call("POST", "/v1/changes", author, {
        "action": "rollout", "pipeline_name": NAME, "reason": "ship the new prompt",
        "rollout": {"canary": "1.1.0", "percent": 25}}, want=201)
    cid = change["change_id"]
    assert (change["status"], change["target"]) == ("pending", f"pipeline:{NAME}")
    # activation without approval is still blocked
    refused = await api.call("POST", f"/v1/changes/{cid}/apply", author, want=409)
    assert refused["error"]["field"] == "change_id" and "pending" in refused["error"]["message"]
    # its submitter may not approve it
    self_review = await api.call("POST", f"/v1/changes/{cid}/approve", author,
                                 {"note": "lgtm"}, want=403)
    assert self_review["error"]["code"] == "self_review"
    approved = await api.call("POST", f"/v1/changes/{cid}/approve", reviewer,
                              {"note": "gates look fine"})
    assert approved["status"] == "approved" and approved["review_note"] == "gates look fine"
    applied = await api.call("POST", f"/v1/changes/{cid}/apply", author)
    assert applied["status"] == "applied" and applied["applied_at_ms"] is not None
    rollout = (await api.call("GET", f"/v1/pipelines/{NAME}/rollout", author))["rollout"]
    assert (rollout["canary_version"], rollout["percent"]) == ("1.1.0", 25.0)
    # applied once: a second apply changes nothing
    again = await api.call("POST", f"/v1/changes/{cid}/apply", author, want=409)
    assert "applied" in again["error"]["message"]
    assert (await api.call("GET", f"/v1/pipelines/{NAME}/rollout",
                           author))["rollout"]["revision"] == rollout["revision"]

    # the audit log carries the decision metadata of every step
    [submitted] = await api.audit("change.submitted")
    [approval] = await api.audit("change.approved")
    [done] = await api.audit("change.applied")
    [canary] = await api.audit("rollout.canary")
    assert submitted["detail"]["reason"] == "ship the new prompt"
    assert approval["detail"]["reviewed_by"] == done["detail"]["reviewed_by"] != \
        done["detail"]["submitted_by"]
    assert done["detail"]["review_note"] == "gates look fine"
    assert done["detail"]["request_hash"] == change["request_hash"]
    assert canary["detail"]["change_id"] == cid


async def test_policy_activation_and_rollback_need_approval_and_a_rejection_never_applies(
    api: ChangeApi,
) -> None:
    author, reviewer = await api.key("operator"), await api.key("operator")
    policy = {"providers": {"stt": "pocketsphinx"}, "turn_budget_ms": 9000}
    blocked = await api.call("POST", "/v1/configs/policy/acme", author, {"body": policy},
                             want=403)
    assert blocked["error"]["code"] == "approval_required"
    # published inactive, then activated through a reviewed change
    published = await api.call("POST", "/v1/configs/policy/acme", author,
                               {"body": policy, "activate": False}, want=201)
    assert published["active"] is False
    direct = await api.call("POST", "/v1/configs/policy/acme/activate", author,
                            {"version": 1}, want=403)
    assert direct["error"]["code"] == "approval_required"
    change = await api.call("POST", "/v1/changes", author, {
        "action": "config.activate", "config_kind": "policy", "config_scope": "acme",
        "config_version": 1}, want=201)
    # a rejected change never applies
    rejected = await api.call("POST", f"/v1/changes/{change['change_id']}/reject", reviewer,
                              {"note": "budget too tight"})
    assert rejected["status"] == "rejected"
    await api.call("POST", f"/v1/changes/{change['change_id']}/apply", author, want=409)
    versions = (await api.call("GET", "/v1/configs/policy/acme", author))["versions"]
    assert [v["active"] for v in versions] == [False]
    change = await api.call("POST", "/v1/changes", author, {
        "action": "config.activate", "config_kind": "policy", "config_scope": "acme",
        "config_version": 1}, want=201)
    await api.call("POST", f"/v1/changes/{change['change_id']}/approve", reviewer)
    await api.call("POST", f"/v1/changes/{change['change_id']}/apply", reviewer)
    versions = (await api.call("GET", "/v1/configs/policy/acme", author))["versions"]
    assert [v["active"] for v in versions] == [True]
    [activated] = await api.audit("policy.activate")
    assert activated["detail"] == {"version": 1, "change_id": change["change_id"]}
    assert activated["tenant_id"] == "acme"

    # a rollback too; a change missing its target field is refused naming it
    missing = await api.call("POST", "/v1/changes", author,
                             {"action": "rollback", "pipeline_name": NAME}, want=422)
    assert missing["error"]["field"] == "rollback_to"
    await api.call("POST", f"/v1/pipelines/{NAME}/rollback", author, {"to": "1.0.0"},
                   want=403)
    change = await api.call("POST", "/v1/changes", author, {
        "action": "rollback", "pipeline_name": NAME, "rollback_to": "1.0.0"}, want=201)
    await api.call("POST", f"/v1/changes/{change['change_id']}/approve", reviewer)
    await api.call("POST", f"/v1/changes/{change['change_id']}/apply", author)
    rollout = (await api.call("GET", f"/v1/pipelines/{NAME}/rollout", author))["rollout"]
    assert rollout["stable_version"] == "1.0.0"
    listed = (await api.call("GET", "/v1/changes", author, None))["changes"]
    assert sorted(c["status"] for c in listed) == ["applied", "applied", "rejected"]
    pending = await api.http.get("/v1/changes", params={"status": "pending"}, headers=author)
    assert pending.json()["changes"] == []
    assert len(await api.audit("change.blocked")) == 3
