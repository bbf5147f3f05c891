"""The live capability source of an assembled session (F-161).

At every turn start the plan resolver asks it for the session's transport
capabilities (the connection in force now) and for each provider the turn is
bound to; the answers are frozen into the turn's plan as
``capability:*`` nondeterministic inputs (:mod:`rspp.contracts._capabilities`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rspp.contracts import (
    CAPABILITY_KEY_PREFIX,
    NondeterministicSource,
    TransportCapabilities,
    capability_ref,
)
from rspp.providers import Provider

__all__ = ["SessionCapabilities"]

_OTHER = NondeterministicSource.OTHER


class SessionCapabilities:
    """Reads ``transport.capabilities`` and each bound provider's snapshot when asked."""

    def __init__(self, transport: object, providers: Mapping[str, Provider]) -> None:
        self.transport = transport
        self.providers = providers

    def capture(self, turn_id: str, bindings: Mapping[str, str]
                ) -> Sequence[tuple[str, NondeterministicSource, str]]:
        out: list[tuple[str, NondeterministicSource, str]] = []
        caps = getattr(self.transport, "capabilities", None)
        if isinstance(caps, TransportCapabilities):
            out.append((f"{CAPABILITY_KEY_PREFIX}transport", _OTHER, capability_ref(caps)))
        for modality, provider_id in sorted(bindings.items()):
            provider = self.providers.get(provider_id)
            if provider is not None:
                out.append((f"{CAPABILITY_KEY_PREFIX}provider:{modality}", _OTHER,
                            capability_ref(provider.capability_snapshot())))
        return out
