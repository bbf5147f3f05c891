"""NF-037 through the CLI: `rspp cp serve --require-signed-changes` applies rollouts and
policy activations only as changes whose submission and approval are signed.

Two operators make local Ed25519 keys (`rspp cp change keygen`) and register their public
halves (`register-key`); an unsigned submission is refused naming `signature`; a signed
one (`--signing-key`) is approved with a signature by the other key and applied; `rspp cp
change verify --target pipeline:NAME` shows the deployed artifact's signed identities and
approval trail, verified. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ReviewedCp, RsppCli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ADMIN = "signed-admin-key"


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_signed_changes_apply_and_the_deployed_artifacts_provenance_verifies(
    reviewed_cp: Callable[..., ReviewedCp], rspp_cli: RsppCli, tmp_path: Path, store: str,
) -> None:
    cp, ok = rspp_cli.cp, rspp_cli.ok
    url, author, reviewer = reviewed_cp(store, ADMIN, "--require-signed-changes")
    keys = {who: tmp_path / f"{who}.pem" for who in ("author", "reviewer")}
    for file in keys.values():
        made = cp("change", "keygen", "--out", str(file), key=ADMIN, server=url)
        assert made.returncode == 0 and "BEGIN PUBLIC KEY" in made.stdout, made.stderr
        assert file.stat().st_mode & 0o777 == 0o600
    fingerprints = {
        who: ok(cp("change", "register-key", "--signing-key", str(keys[who]),
                   key=author if who == "author" else reviewer, server=url))["fingerprint"]
        for who in keys}
    rollout = ("change", "submit", "rollout", "--pipeline", "voice-assistant", "--canary",
               "2.0.0", "--percent", "10", "--reason", "new voice")
    unsigned = cp(*rollout, key=author, server=url)
    assert unsigned.returncode == 1
    assert "signature_required" in unsigned.stderr and "(field: signature)" in unsigned.stderr
    # another operator's private key does not sign for this API key
    stolen = cp(*rollout, "--signing-key", str(keys["reviewer"]), key=author, server=url)
    assert stolen.returncode == 1 and "bad_signature" in stolen.stderr
    change = ok(cp(*rollout, "--signing-key", str(keys["author"]), key=author, server=url))
    cid = change["change_id"]
    assert change["submit_signer"] == fingerprints["author"]
    unsigned_review = cp("change", "approve", cid, key=reviewer, server=url)
    assert unsigned_review.returncode == 1 and "(field: signature)" in unsigned_review.stderr
    approved = ok(cp("change", "approve", cid, "--note", "gates ok", "--signing-key",
                     str(keys["reviewer"]), key=reviewer, server=url))
    assert approved["review_signer"] == fingerprints["reviewer"]
    assert ok(cp("change", "apply", cid, key=author, server=url))["status"] == "applied"
    state = httpx.get(f"{url}/v1/pipelines/voice-assistant/rollout",
                      headers={"Authorization": f"Bearer {author}"}).json()["rollout"]
    assert state["canary_version"] == "2.0.0"

    # a policy activation: published inactive, activated by a signed, approved change
    auth = {"Authorization": f"Bearer {author}"}
    published = httpx.post(f"{url}/v1/configs/policy/acme", headers=auth, json={
        "body": {"providers": {"stt": "pocketsphinx"}}, "activate": False})
    assert published.status_code == 201, published.text
    policy = ok(cp("change", "submit", "config.activate", "--kind", "policy", "--scope", "acme",
                   "--version", "1", "--signing-key", str(keys["author"]), key=author,
                   server=url))
    ok(cp("change", "approve", policy["change_id"], "--signing-key", str(keys["reviewer"]),
          key=reviewer, server=url))
    ok(cp("change", "apply", policy["change_id"], key=reviewer, server=url))

    report = ok(cp("change", "verify", "--target", "pipeline:voice-assistant", key=reviewer,
                   server=url))
    assert report["ok"] is True
    [trail] = report["changes"]
    assert (trail["change_id"], trail["status"], trail["signed"]) == (cid, "applied", True)
    assert (trail["submitted_by"], trail["submit_signer"]) == (
        change["submitted_by"], fingerprints["author"])
    assert (trail["reviewed_by"], trail["review_signer"]) == (
        approved["reviewed_by"], fingerprints["reviewer"])
    assert trail["applied_by"] == change["submitted_by"]
    everything = ok(cp("change", "verify", key=reviewer, server=url))
    assert [c["target"] for c in everything["changes"]] == [
        "pipeline:voice-assistant", "config:policy/acme"]
    audit = cp("audit", key=ADMIN, server=url).stdout
    assert "signer_key.registered" in audit and "change.applied" in audit
