"""Provider selection: policy rules, health and price signals, deterministic default.

The allowed chain comes from the policy (per tenant/language/region/cost tier,
F-056). Within it, fresh health signals demote unhealthy providers and fresh
price signals order by price (F-060, F-066); when signals are missing or stale
the policy's own order is used and the decision says so. Every decision carries
a reason string naming its source, recorded with ``provider_switch`` signals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rspp.contracts import ProviderHealth, ProviderStatus

__all__ = ["RoutingDecision", "RoutingRule", "RoutingSignals", "choose_chain", "order_providers"]


@dataclass(frozen=True, slots=True)
class RoutingRule:
    """``when`` attributes (all must match) select ``providers`` (first match wins)."""

    when: Mapping[str, str]
    providers: tuple[str, ...]
    rule_id: str = "rule"


def choose_chain(
    rules: tuple[RoutingRule, ...], attributes: Mapping[str, str], default: tuple[str, ...]
) -> tuple[tuple[str, ...], str]:
    """The provider chain for a session's attributes, and why it was chosen."""
    for rule in rules:
        if all(attributes.get(k) == v for k, v in rule.when.items()):
            matched = ",".join(f"{k}={v}" for k, v in sorted(rule.when.items()))
            return rule.providers, f"rule={rule.rule_id} matched {matched}"
    return default, "no rule matched; default chain"


@dataclass(frozen=True, slots=True)
class RoutingSignals:
    """Optional real-time inputs; ``now_ms`` decides freshness deterministically."""

    now_ms: int
    health: ProviderHealth | None = None
    prices: Mapping[str, float] = field(default_factory=dict)
    prices_as_of_ms: int | None = None
    max_price_age_ms: int = 60_000


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    order: tuple[str, ...]
    source: Literal["signals", "default"]
    reason: str


def order_providers(allowed: tuple[str, ...], signals: RoutingSignals | None) -> RoutingDecision:
    """Order ``allowed`` by health then price; fall back to the given order."""
    if signals is None:
        return RoutingDecision(
            allowed, "default", "signals unavailable; deterministic default order"
        )
    notes: list[str] = []
    health_ok = signals.health is not None and signals.health.meta.expires_at_ms > signals.now_ms
    prices_ok = (
        bool(signals.prices)
        and signals.prices_as_of_ms is not None
        and signals.now_ms - signals.prices_as_of_ms <= signals.max_price_age_ms
    )
    if not health_ok:
        notes.append("health " + ("stale" if signals.health is not None else "missing"))
    if not prices_ok:
        notes.append("prices " + ("stale" if signals.prices else "missing"))
    if not health_ok and not prices_ok:
        return RoutingDecision(
            allowed, "default", "; ".join(notes) + "; deterministic default order"
        )

    def rank(item: tuple[int, str]) -> tuple[int, float, int]:
        index, pid = item
        status_rank = 0
        if health_ok and signals.health is not None:
            entry = signals.health.providers.get(pid)
            status = entry.status if entry is not None else ProviderStatus.UNKNOWN
            status_rank = {
                ProviderStatus.HEALTHY: 0,
                ProviderStatus.UNKNOWN: 1,
                ProviderStatus.DEGRADED: 2,
                ProviderStatus.UNHEALTHY: 3,
            }[status]
        price = signals.prices.get(pid, float("inf")) if prices_ok else 0.0
        return status_rank, price, index

    order = tuple(pid for _, pid in sorted(enumerate(allowed), key=rank))
    used = [s for s, ok in (("health", health_ok), ("price", prices_ok)) if ok]
    reason = f"ordered by {'+'.join(used)} signals"
    if notes:
        reason += " (" + "; ".join(notes) + ")"
    return RoutingDecision(order, "signals", reason)
