"""Per-signal rules as data, read from the reference schema's ``control_signal`` table.

``signal_rule(SignalName.CANCEL)`` answers "who may emit this, in which event scope,
with which fields" without validating a record, so emitters (the kernel, the
control plane) can build signals that are right by construction. Every control
signal additionally sits on ``ControlLane`` with ``payload_class`` ``metadata`` and
an ``authority_epoch`` (the envelope rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec

from rspp.contracts._enums import Emitter, EventScope, SignalName
from rspp.contracts._validate import reference_schema
from rspp.errors import ContractError

#: Fields every control signal needs whatever its name (envelope + ControlLane rules).
CONTROL_SIGNAL_BASE_REQUIRED: tuple[str, ...] = ("signal", "emitted_by", "authority_epoch")


class SignalRule(msgspec.Struct, frozen=True, kw_only=True):
    """What the reference schema demands of one control signal."""

    signal: SignalName
    emitters: frozenset[Emitter]
    event_scope: EventScope | None = None
    required: tuple[str, ...] = ()


def _values(rule: Mapping[str, Any]) -> list[str]:
    if "const" in rule:
        return [rule["const"]]
    return list(rule.get("enum", ()))


@lru_cache(maxsize=1)
def signal_rules() -> dict[SignalName, SignalRule]:
    """The rule of every signal, merged over all ``if signal ...`` entries of the schema."""
    emitters: dict[SignalName, set[Emitter]] = {}
    scopes: dict[SignalName, EventScope] = {}
    required: dict[SignalName, list[str]] = {s: [] for s in SignalName}
    for entry in reference_schema()["$defs"]["control_signal"]["allOf"]:
        condition = entry.get("if", {}).get("properties", {}).get("signal")
        if condition is None:
            continue
        then: Mapping[str, Any] = entry.get("then", {})
        props: Mapping[str, Any] = then.get("properties", {})
        for name in _values(condition):
            signal = SignalName(name)
            if "emitted_by" in props:
                allowed = {Emitter(v) for v in _values(props["emitted_by"])}
                emitters[signal] = emitters.get(signal, allowed) & allowed
            if "event_scope" in props:
                scopes[signal] = EventScope(_values(props["event_scope"])[0])
            for field in then.get("required", ()):
                if field not in required[signal]:
                    required[signal].append(field)
    return {
        s: SignalRule(
            signal=s,
            emitters=frozenset(emitters.get(s, set(Emitter))),
            event_scope=scopes.get(s),
            required=tuple(required[s]),
        )
        for s in SignalName
    }


def signal_rule(signal: SignalName | str) -> SignalRule:
    """The rule of one signal; raises :class:`ContractError` for an unknown name."""
    try:
        key = SignalName(signal)
    except ValueError as exc:
        msg = f"unknown control signal {signal!r}; see SignalName for the vocabulary"
        raise ContractError(msg) from exc
    return signal_rules()[key]
