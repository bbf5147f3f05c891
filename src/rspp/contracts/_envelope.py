"""Event envelopes: data/telemetry event records and control signals.

The envelope is closed (``forbid_unknown_fields``): payload bodies such as audio
bytes or text never travel inside it. See :mod:`rspp.contracts._framing` for how a
payload travels beside its envelope.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from rspp.contracts._enums import (
    CancelScopeKind,
    Emitter,
    EventScope,
    Lane,
    PayloadClass,
    SignalName,
)
from rspp.contracts._types import NonEmptyStr, NonNegInt, PosInt, SchemaVersion


class MediaTime(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Media position of an audio event: exactly one of ``sample_index`` or ``pts_ms``."""

    sample_index: NonNegInt | None = None
    pts_ms: NonNegInt | None = None


class SeqRange(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Inclusive range of runtime sequence numbers (drop/merge lineage)."""

    start: NonNegInt
    end: NonNegInt


MergedIds = Annotated[tuple[NonEmptyStr, ...], Meta(min_length=1, max_length=64)]


class _Envelope(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Fields every event ABI record carries (required first, then optional)."""

    schema_version: SchemaVersion
    event_scope: EventScope
    session_id: NonEmptyStr
    pipeline_version: NonEmptyStr
    event_id: NonEmptyStr
    lane: Lane
    transport_sequence: NonNegInt | None
    runtime_sequence: NonNegInt
    runtime_timestamp_ms: NonNegInt
    wall_clock_timestamp_ms: NonNegInt
    payload_class: PayloadClass
    turn_id: NonEmptyStr | None = None
    node_id: NonEmptyStr | None = None
    edge_id: NonEmptyStr | None = None
    causal_parent_id: NonEmptyStr | None = None
    idempotency_key: NonEmptyStr | None = None
    provider_invocation_id: NonEmptyStr | None = None
    sync_id: NonEmptyStr | None = None
    sync_domain: NonEmptyStr | None = None
    discontinuity_id: NonEmptyStr | None = None
    merge_group_id: NonEmptyStr | None = None
    merged_from_event_ids: MergedIds | None = None
    late_after_cancel: bool | None = None
    authority_epoch: NonNegInt | None = None
    lease_token: NonEmptyStr | None = None
    timestamp_ms: NonNegInt | None = None
    media_time: MediaTime | None = None
    reason: NonEmptyStr | None = None
    seq_range: SeqRange | None = None
    target_lane: Lane | None = None
    amount: PosInt | None = None


class EventRecord(
    _Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A DataLane or TelemetryLane event (kind ``event_record``): never carries ``signal``."""

    emitted_by: Emitter | None = None
    scope: str | None = None


class ControlSignal(
    _Envelope, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A ControlLane signal (kind ``control_signal``) with its owning emitter."""

    signal: SignalName
    emitted_by: Emitter
    scope: CancelScopeKind | None = None
