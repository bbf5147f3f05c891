"""Provider policy (CP-04): selection per tenant/language/region/cost tier, fallbacks,
budgets, degrade posture, compliance-node insertion; evaluated with provider health
(CP-10) into a :class:`PolicyResolution` snapshot (F-056, F-060, F-062, F-114)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

from rspp.contracts import (
    AdaptiveAction,
    PolicyResolution,
    ProviderHealth,
    ProviderStatus,
    RecordingLevel,
    SnapshotMeta,
)
from rspp.controlplane._errors import InvalidRequest
from rspp.providers import RoutingSignals, order_providers

MatchKey = Literal["language", "region", "cost_tier"]
#: provider names, roles, attribute values and node ids in a policy document
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class RuleMatch(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """The session attributes a rule matches (a field left out matches any value)."""

    language: Ref | None = None
    region: Ref | None = None
    cost_tier: Ref | None = None

    def items(self) -> list[tuple[MatchKey, str]]:
        given: list[tuple[MatchKey, str]] = [
            ("language", self.language or ""),
            ("region", self.region or ""),
            ("cost_tier", self.cost_tier or ""),
        ]
        return [(key, value) for key, value in given if getattr(self, key) is not None]


class ProviderRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When every ``match`` key equals the session's attribute, override ``providers``."""

    match: RuleMatch
    providers: dict[Ref, Ref]


#: node types a policy may insert: one text input, one text output (F-062)
INSERTABLE_TYPES = ("compliance", "redaction")


class ComplianceNode(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A node a policy inserts before speech (between the LLM and TTS; F-062)."""

    type: Literal["compliance", "redaction"]
    params: dict[str, Any] = {}


class PriceRouting(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Route a modality by live price and availability signals (F-066).

    ``candidates`` in their deterministic default order; the healthiest, then cheapest
    by the providers' reported ``price_usd`` goes first. Prices older than
    ``max_age_ms`` (or missing) are not used: the order falls back to ``candidates``
    (health still demotes an unhealthy one), and the decision says why."""

    candidates: Annotated[tuple[Ref, ...], msgspec.Meta(min_length=1, max_length=20)]
    max_age_ms: Annotated[int, msgspec.Meta(ge=1, le=86_400_000)] = 60_000


class PolicyDocument(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    providers: dict[Ref, Ref] = {}
    rules: tuple[ProviderRule, ...] = ()
    fallback_chains: dict[Ref, tuple[Ref, ...]] = {}
    turn_budget_ms: Annotated[int, msgspec.Meta(ge=1, le=3_600_000)] | None = None
    degrade_to_text_on_tts_failure: bool = True
    allowed_adaptive_actions: tuple[AdaptiveAction, ...] = ()
    recording_level: RecordingLevel = RecordingLevel.L1
    #: node ids to insert, each defined in ``compliance_nodes`` or a bare insertable type
    insert_compliance_nodes: tuple[Ref, ...] = ()
    compliance_nodes: dict[Ref, ComplianceNode] = {}
    allow_compliance_insertion: bool = True
    price_routing: dict[Ref, PriceRouting] = {}


class SessionAttributes(msgspec.Struct, frozen=True, kw_only=True):
    language: str | None = None
    region: str | None = None
    cost_tier: str | None = None

    def get(self, key: MatchKey) -> str | None:
        value: str | None = getattr(self, key)
        return value

    @classmethod
    def of(cls, attributes: Mapping[str, str]) -> SessionAttributes:
        """The policy-relevant attributes of a session's route (other keys are ignored)."""
        return cls(**{k: v for k, v in attributes.items() if k in _MATCH_KEYS})


_MATCH_KEYS: tuple[MatchKey, ...] = ("language", "region", "cost_tier")


class PolicyDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The resolution plus a trace of why each provider was chosen (F-056 traceability)."""

    resolution: PolicyResolution
    trace: tuple[str, ...]


def parse_policy(body: dict[str, Any]) -> PolicyDocument:
    try:
        doc = msgspec.convert(body, PolicyDocument)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"policy is invalid: {exc}", field=_field_of(str(exc))) from None
    for index, name in enumerate(doc.insert_compliance_nodes):
        if name not in doc.compliance_nodes and name not in INSERTABLE_TYPES:
            raise InvalidRequest(
                f"policy.insert_compliance_nodes[{index}]={name!r} is neither defined in "
                f"compliance_nodes nor an insertable node type {list(INSERTABLE_TYPES)}; "
                "define it as compliance_nodes: {NAME: {type: compliance, params: {...}}}",
                field=f"policy.insert_compliance_nodes[{index}]")
        if not name.isidentifier():
            raise InvalidRequest(
                f"policy.insert_compliance_nodes[{index}]={name!r} is not a node id; use "
                "letters, digits and underscores", field=f"policy.insert_compliance_nodes[{index}]")
    return doc


def compliance_entry(doc: PolicyDocument, name: str) -> str:
    """How :class:`PolicyResolution` carries an inserted node: ``{"id", "type", "params"}``
    as compact JSON (the runtime splices it in with :func:`rspp.spec.policy_inserts`)."""
    node = doc.compliance_nodes.get(name) or ComplianceNode(type=name)  # type: ignore[arg-type]
    entry = {"id": name, "type": node.type, "params": node.params}
    return msgspec.json.encode(entry, order="sorted").decode()


def _field_of(message: str) -> str:
    marker = "at `$."
    if marker in message:
        return "policy." + message.split(marker, 1)[1].split("`", 1)[0]
    return "policy"


def evaluate_policy(
    doc: PolicyDocument,
    attrs: SessionAttributes,
    health: ProviderHealth | None,
    meta: SnapshotMeta,
) -> PolicyDecision:
    bindings = dict(doc.providers)
    trace: list[str] = [f"defaults {sorted(bindings.items())}"]
    for index, rule in enumerate(doc.rules):
        if all(attrs.get(key) == value for key, value in rule.match.items()):
            bindings.update(rule.providers)
            trace.append(f"rule[{index}] {dict(rule.match.items())} -> {dict(rule.providers)}")
    for modality, routing in doc.price_routing.items():
        order, why = _price_order(routing, health, meta.issued_at_ms)
        bindings[modality] = order[0]
        trace.append(f"{modality}: price routing {why} -> {list(order)}")
    statuses = health.providers if health is not None else {}
    chains: dict[str, tuple[str, ...]] = {}
    for modality, primary in list(bindings.items()):
        routed = doc.price_routing.get(modality)
        chain = (primary, *(_price_order(routed, health, meta.issued_at_ms)[0][1:]
                            if routed is not None else doc.fallback_chains.get(modality, ())))
        usable = [p for p in chain if _usable(statuses.get(p))]
        if usable and usable[0] != primary:
            trace.append(f"{modality}: {primary} unhealthy, using {usable[0]}")
            bindings[modality] = usable[0]
        rest = tuple(p for p in (usable or list(chain)) if p != bindings[modality])
        if rest:
            chains[modality] = rest
    compliance = doc.insert_compliance_nodes if doc.allow_compliance_insertion else ()
    if compliance:
        trace.append(f"insert compliance nodes {list(compliance)}")
    entries = tuple(compliance_entry(doc, name) for name in compliance)
    resolution = PolicyResolution(
        meta=meta,
        provider_bindings=bindings,
        fallback_chains=chains,
        allowed_adaptive_actions=doc.allowed_adaptive_actions,
        recording_level=doc.recording_level,
        turn_budget_ms=doc.turn_budget_ms,
        degrade_to_text_on_tts_failure=doc.degrade_to_text_on_tts_failure,
        insert_compliance_nodes=entries,
    )
    return PolicyDecision(resolution=resolution, trace=tuple(trace))


def selection_detail(decision: PolicyDecision, attrs: SessionAttributes,
                     policy_version: int) -> dict[str, Any]:
    """The audit detail of a session's provider selection (``policy.select``): what was
    chosen, from which policy and health versions, for which attributes, and why."""
    res = decision.resolution
    return {
        "policy_version": policy_version,
        "attributes": {k: v for k in _MATCH_KEYS if (v := attrs.get(k)) is not None},
        "provider_bindings": dict(res.provider_bindings),
        "fallback_chains": {m: list(c) for m, c in res.fallback_chains.items()},
        "trace": list(decision.trace),
    }


def _price_order(routing: PriceRouting, health: ProviderHealth | None, now_ms: int
                 ) -> tuple[tuple[str, ...], str]:
    """The candidates by health then fresh price, and the reason (signals or default)."""
    entries = health.providers if health is not None else {}
    prices = {p: e.price_usd for p in routing.candidates
              if (e := entries.get(p)) is not None and e.price_usd is not None}
    stamps = [e.price_at_ms for p in prices if (e := entries.get(p)) is not None
              and e.price_at_ms is not None]
    decision = order_providers(routing.candidates, RoutingSignals(
        now_ms=now_ms, health=health, prices=prices,
        prices_as_of_ms=min(stamps) if stamps else None, max_price_age_ms=routing.max_age_ms))
    priced = ", ".join(f"{p}={v:g}" for p, v in sorted(prices.items()))
    return decision.order, f"{decision.source}: {decision.reason}" + (
        f"; reported prices {priced}" if priced else "")


def _usable(entry: Any) -> bool:
    return entry is None or entry.status != ProviderStatus.UNHEALTHY
