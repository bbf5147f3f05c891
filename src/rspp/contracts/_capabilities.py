"""Capability snapshots frozen into a turn's plan (F-161).

At turn start the plan resolver captures what the session's transport and each
bound provider support, and freezes it in the ``ResolvedTurnPlan``. The
reference schema closes the plan and its ``snapshot_provenance``
(``additionalProperties: false``), and the wire schema is the contract, so no
new plan field carries them. They travel where the schema leaves room: one
entry each of ``determinism.nondeterministic_inputs`` (the turn's inputs read
from outside the graph), with

* ``input_key``: ``capability:transport`` or ``capability:provider:<modality>``,
* ``source``: ``other``,
* ``evidence_ref``: ``capabilities:`` + the canonical JSON (sorted keys) of a
  :class:`TransportCapabilities` / :class:`ProviderCapabilities`.

The plan hash covers them, the recorded plan (and the OR-02 evidence, which
repeats the plan's determinism context) shows them, a replay substitutes the
recorded ones, and ``rspp contracts validate`` decodes every such reference
with :func:`capability_issues`. A change of a capability mid-turn cannot reach
the turn: the plan is immutable; the next turn's plan records the new value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from rspp.contracts._schema_check import ValidationIssue
from rspp.contracts._types import NonEmptyStr, PosInt

__all__ = [
    "CAPABILITY_KEY_PREFIX",
    "CAPABILITY_REF_PREFIX",
    "ProviderCapabilities",
    "TransportCapabilities",
    "capability_issues",
    "capability_ref",
    "plan_capabilities",
]

#: ``input_key`` prefix of a captured capability snapshot
CAPABILITY_KEY_PREFIX: Final = "capability:"
#: ``evidence_ref`` prefix, followed by the snapshot's canonical JSON
CAPABILITY_REF_PREFIX: Final = "capabilities:"

_STRUCT: Final[dict[str, Any]] = {
    "frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class TransportCapabilities(msgspec.Struct, **_STRUCT):
    """What the session's transport supports as of turn start."""

    #: ``loopback``, ``websocket``, ``telephony``, ``webrtc``, ``livekit``
    transport: NonEmptyStr
    #: the media codec on the client's wire (``pcm_s16le``, ``mulaw``, ``opus``)
    codec: NonEmptyStr
    input_sample_rate_hz: PosInt
    #: reply audio rate (None: not known yet, e.g. a file transport before its first reply)
    output_sample_rate_hz: PosInt | None
    #: rates a client may declare on this transport
    sample_rates: tuple[PosInt, ...]
    #: the client can talk while a reply plays
    full_duplex: bool
    #: talking over a reply (or an ``interrupt``) cancels it
    barge_in: bool
    #: the client echoes playback marks (playback signals follow the echoes)
    playback_marks: bool


class ProviderCapabilities(msgspec.Struct, **_STRUCT):
    """What the provider bound to one modality supports, as its adapter declares it."""

    provider_id: NonEmptyStr
    #: the provider kind (``stt``, ``llm``, ``tts``)
    kind: NonEmptyStr
    streaming: bool
    languages: tuple[NonEmptyStr, ...]
    voices: tuple[NonEmptyStr, ...] = ()
    sample_rates: tuple[PosInt, ...] = ()
    #: the longest input one call takes (characters of text), None: no declared limit
    max_input_chars: PosInt | None = None
    incremental_input: bool = False
    interim_results: bool = False
    offline: bool = False


_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_KINDS: Final = {"transport": TransportCapabilities, "provider": ProviderCapabilities}


def capability_ref(snapshot: TransportCapabilities | ProviderCapabilities) -> str:
    """The ``evidence_ref`` of a snapshot: prefix + canonical JSON."""
    return CAPABILITY_REF_PREFIX + _ENCODER.encode(snapshot).decode()


def _decode(input_key: str, ref: str) -> TransportCapabilities | ProviderCapabilities:
    kind = input_key.removeprefix(CAPABILITY_KEY_PREFIX).split(":", 1)[0]
    struct = _KINDS.get(kind)
    if struct is None:
        raise ValueError(f"unknown capability kind {kind!r}; use capability:transport or "
                         "capability:provider:<modality>")
    if not ref.startswith(CAPABILITY_REF_PREFIX):
        raise ValueError(f"evidence_ref must start with {CAPABILITY_REF_PREFIX!r}")
    try:
        snapshot: TransportCapabilities | ProviderCapabilities = msgspec.json.decode(
            ref[len(CAPABILITY_REF_PREFIX):], type=struct)
        return snapshot
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(str(exc)) from None


def _inputs(plan: Mapping[str, Any]) -> list[tuple[int, str, str]]:
    det = plan.get("determinism")
    items = det.get("nondeterministic_inputs") if isinstance(det, Mapping) else None
    out = []
    for i, item in enumerate(items if isinstance(items, list | tuple) else ()):
        if isinstance(item, Mapping) and str(item.get("input_key", "")).startswith(
                CAPABILITY_KEY_PREFIX):
            out.append((i, str(item["input_key"]), str(item.get("evidence_ref", ""))))
    return out


def capability_issues(plan: object) -> list[ValidationIssue]:
    """Every capability snapshot of a plan record that does not decode (empty: all do)."""
    if not isinstance(plan, Mapping):
        return []
    issues = []
    for i, key, ref in _inputs(plan):
        try:
            _decode(key, ref)
        except ValueError as exc:
            path = f"determinism.nondeterministic_inputs.{i}.evidence_ref"
            issues.append(ValidationIssue(path, f"{key}: {exc}"))
    return issues


def plan_capabilities(
    plan: Mapping[str, Any],
) -> dict[str, TransportCapabilities | ProviderCapabilities]:
    """The capability snapshots a plan record froze, by ``input_key`` (bad ones skipped)."""
    out: dict[str, TransportCapabilities | ProviderCapabilities] = {}
    for _, key, ref in _inputs(plan):
        try:
            out[key] = _decode(key, ref)
        except ValueError:
            continue
    return out
