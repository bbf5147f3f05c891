"""OR-02 replay evidence: one record per accepted turn (DESIGN invariant 6).

The evidence travels in the timeline as ``{"kind": "or02_evidence", "record": {...}}``.
``or02_evidence`` is NOT a kind of the reference wire schema (it is an RSPP
recording artefact); validators skip it or check it with :class:`OR02Evidence`
(see :func:`missing_evidence_fields`).

Baseline fields (all required, schema version ``or02/v1``):

* identity + plan hash: ``session_id``, ``turn_id``, ``pipeline_version``, ``plan_hash``
* authority: ``authority_epoch_at_open``, ``authority_epoch_at_terminal``
* admission outcome: ``admission_outcome`` (+ ``admission_reason``)
* snapshot refs: ``snapshot_refs`` (the plan's six snapshot ids)
* determinism markers: ``determinism`` (seed, ordering markers, merge rule id/version)
* lifecycle timestamps: ``turn_open_proposed_ms``, ``turn_open_ms``, ``terminal_ms``
* terminal outcome: ``terminal_signal`` (``commit``/``abort``) and ``abort_reason`` for aborts
* cancel markers: ``cancel`` (required when the turn aborted with reason ``cancelled``)
* provider invocation outcomes: ``provider_invocations`` (possibly empty tuple)
* the recording level in force at the terminal point
* optional: ``pool_wait_ms``, the turn's total wait for shared pool slots (pooled runtimes)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from rspp.contracts import (
    EVIDENCE_KIND,
    CancelScopeKind,
    DeterminismContext,
    OutcomeKind,
    RecordingLevel,
    SnapshotProvenance,
)

__all__ = [
    "EVIDENCE_KIND",
    "OR02_EVIDENCE_SCHEMA_VERSION",
    "REQUIRED_EVIDENCE_FIELDS",
    "CancelMarkers",
    "OR02Evidence",
    "ProviderInvocationOutcome",
    "missing_evidence_fields",
]

#: Timeline ``kind`` of an evidence line.
#: The evidence schema version this package writes and checks.
OR02_EVIDENCE_SCHEMA_VERSION = "or02/v1"

_NonEmpty = Annotated[str, Meta(min_length=1)]
_NonNeg = Annotated[int, Meta(ge=0)]
_STRUCT = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True, "omit_defaults": True}


class CancelMarkers(msgspec.Struct, **_STRUCT):
    """When a cancel was accepted and when its egress fence was applied."""

    scope: CancelScopeKind
    reason: _NonEmpty
    cancel_accepted_ms: _NonNeg
    cancel_fence_applied_ms: _NonNeg


class ProviderInvocationOutcome(msgspec.Struct, **_STRUCT):
    """Normalised outcome of one provider invocation inside the turn."""

    provider_invocation_id: _NonEmpty
    modality: _NonEmpty
    provider_id: _NonEmpty
    outcome: _NonEmpty
    attempts: Annotated[int, Meta(ge=1)] = 1
    latency_ms: _NonNeg | None = None
    #: the node that called the provider
    node_id: _NonEmpty | None = None
    #: the id of the node cancel scope (``<turn>/<node>``, under the turn's scope) the
    #: invocation runs in: a cancel of that scope cancels it (F-160)
    cancel_scope: _NonEmpty | None = None


class OR02Evidence(msgspec.Struct, **_STRUCT):
    """The baseline replay evidence of one accepted turn."""

    or02_evidence_schema_version: Literal["or02/v1"]
    session_id: _NonEmpty
    turn_id: _NonEmpty
    pipeline_version: _NonEmpty
    plan_hash: Annotated[str, Meta(pattern=r"^[a-fA-F0-9]{64}$")]
    authority_epoch_at_open: _NonNeg
    authority_epoch_at_terminal: _NonNeg
    admission_outcome: OutcomeKind
    admission_reason: _NonEmpty
    snapshot_refs: SnapshotProvenance
    determinism: DeterminismContext
    turn_open_proposed_ms: _NonNeg
    turn_open_ms: _NonNeg
    terminal_ms: _NonNeg
    terminal_signal: Literal["commit", "abort"]
    provider_invocations: tuple[ProviderInvocationOutcome, ...]
    recording_level: RecordingLevel
    runtime_timestamp_ms: _NonNeg
    wall_clock_timestamp_ms: _NonNeg
    abort_reason: _NonEmpty | None = None
    cancel: CancelMarkers | None = None
    #: what the turn's work waited in total for shared execution-pool slots, ms (F-105:
    #: per-session isolation under pooling); omitted when the session runs without a pool
    pool_wait_ms: _NonNeg | None = None


#: Fields every evidence record must carry (conditional ones are checked separately).
REQUIRED_EVIDENCE_FIELDS: tuple[str, ...] = (
    "or02_evidence_schema_version",
    "session_id",
    "turn_id",
    "pipeline_version",
    "plan_hash",
    "authority_epoch_at_open",
    "authority_epoch_at_terminal",
    "admission_outcome",
    "admission_reason",
    "snapshot_refs",
    "determinism",
    "turn_open_proposed_ms",
    "turn_open_ms",
    "terminal_ms",
    "terminal_signal",
    "provider_invocations",
    "recording_level",
)


def missing_evidence_fields(record: Mapping[str, object]) -> list[str]:
    """Every problem of an evidence record as ``field: message`` (empty when complete).

    Checks required fields, the schema version, the conditional ``abort_reason``
    (aborts) and ``cancel`` markers (aborts with reason ``cancelled``), then the
    full typed decode (which names the first bad field path).
    """
    problems = [f"{name}: required field missing" for name in REQUIRED_EVIDENCE_FIELDS
                if record.get(name) is None]
    version = record.get("or02_evidence_schema_version")
    if version is not None and version != OR02_EVIDENCE_SCHEMA_VERSION:
        problems.append(
            f"or02_evidence_schema_version: {version!r} does not match the declared "
            f"{OR02_EVIDENCE_SCHEMA_VERSION!r}"
        )
    if record.get("terminal_signal") == "abort":
        if not record.get("abort_reason"):
            problems.append("abort_reason: required when terminal_signal is 'abort'")
        elif record.get("abort_reason") == "cancelled" and record.get("cancel") is None:
            problems.append("cancel: cancel markers required when abort_reason is 'cancelled'")
    if not problems:
        try:
            msgspec.convert(record, OR02Evidence)
        except msgspec.ValidationError as exc:
            problems.append(str(exc))
    return problems
