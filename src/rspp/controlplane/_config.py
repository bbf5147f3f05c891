"""Control-plane settings (one immutable options object, filled at the edge)."""

from __future__ import annotations

import msgspec

from rspp.controlplane._kms import VaultSettings
from rspp.controlplane._slo import SloConfig
from rspp.controlplane._tokens import TokenKeys


class ControlPlaneSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``token_keys`` defaults to a fresh Ed25519 pair per process when not given."""

    db_url: str
    admin_key: str | None = None
    token_keys: TokenKeys | None = None
    #: where ``token_keys`` came from (``file:PATH``; None: generated in memory or HS256)
    token_key_ref: str | None = None
    #: directory generated signing keys are written to (rotation without a reference,
    #: automated rotation before the maximum age; F-169, NF-035)
    token_key_dir: str | None = None
    #: documented maximum age of a signing key (default 90 days)
    token_key_max_age_s: int = 7_776_000
    #: session-state checkpoints are sealed under this KMS key (``vault-transit:NAME``,
    #: F-169); needs ``vault``
    state_key_ref: str | None = None
    #: the KMS key runtimes sign timelines with (``vault-transit:NAME``, ed25519): listed
    #: and rotated by the /v1/kms routes (purpose ``timeline_signing``)
    timeline_key_ref: str | None = None
    vault: VaultSettings | None = None
    #: a data key seals checkpoints this long before a fresh one is taken from Vault
    state_data_key_max_age_ms: int = 3_600_000
    db_schema: str | None = None
    lease_ttl_ms: int = 30_000
    token_ttl_s: int = 300
    snapshot_ttl_ms: int = 5_000
    heartbeat_timeout_ms: int = 15_000
    #: what the failover monitor does with the sessions of a runtime that stopped
    #: heartbeating: ``migrate`` (rotate each lease to a healthy runtime once it expired;
    #: clients reconnect through the route) or ``drain`` (only stop placing sessions there)
    failover_mode: str = "migrate"
    #: how often the failover monitor looks for runtimes whose heartbeats stopped
    failover_interval_ms: int = 500
    #: a routed session whose client never connected stops counting toward its
    #: runtime's placement load after this long
    placement_grace_ms: int = 60_000
    #: request bodies larger than this are refused with 413 before they are parsed
    max_body_bytes: int = 1_048_576
    #: spec and module documents (publish) have their own size and nesting limits
    max_spec_bytes: int = 262_144
    max_spec_depth: int = 64
    #: rollouts, rollbacks and config activations run only as changes another key
    #: approved (F-165): POST /v1/changes, .../approve, .../apply
    require_approval: bool = False
    #: framework-critical changes (rollouts, rollbacks, config activations) apply only as
    #: changes whose submission and approval are signed by registered Ed25519 signer keys
    #: (NF-037); implies that they apply only as approved changes
    require_signed_changes: bool = False
    #: the deployment's availability SLO and error-budget policy (NF-005, NF-030):
    #: ``rspp cp serve --slo FILE``; ``None``: no SLO is measured and nothing freezes
    slo: SloConfig | None = None
