"""Circuit breaker, routing, policy validation and cost metering (F-056/057/058/060/066/075)."""

from __future__ import annotations

import msgspec
import pytest

from rspp.contracts import (
    ProviderHealth,
    ProviderHealthEntry,
    ProviderStatus,
    SnapshotMeta,
)
from rspp.providers import (
    BackoffPolicy,
    CircuitBreaker,
    CircuitPolicy,
    CircuitState,
    CostCaps,
    CostMeter,
    InvocationPolicy,
    PolicyError,
    PriceTable,
    RoutingRule,
    RoutingSignals,
    UsageKind,
    choose_chain,
    order_providers,
)

pytestmark = pytest.mark.unit


def test_circuit_opens_on_error_rate_and_recovers_through_half_open(clock) -> None:  # type: ignore[no-untyped-def]
    policy = CircuitPolicy(error_rate_threshold=0.5, window=4, min_calls=4, cooldown_ms=1000)
    breaker = CircuitBreaker("p", policy, clock)
    assert breaker.record(True) is None
    assert breaker.record(False) is None
    assert breaker.record(True) is None
    transition = breaker.record(False)  # 2/4 failures = 0.5 >= threshold
    assert transition is not None and transition.state is CircuitState.OPEN
    assert "threshold=0.50" in transition.reason() and "provider=p" in transition.reason()
    assert breaker.allow() == (False, None)
    clock.advance_ms(999)
    assert breaker.allow()[0] is False
    clock.advance_ms(1)
    allowed, half = breaker.allow()
    assert allowed and half is not None and half.state is CircuitState.HALF_OPEN
    assert breaker.allow()[0] is False  # one probe at a time
    reopened = breaker.record(False)
    assert reopened is not None and reopened.state is CircuitState.OPEN
    clock.advance_ms(1000)
    assert breaker.allow()[0] is True
    closed = breaker.record(True)
    assert closed is not None and closed.state is CircuitState.CLOSED
    assert breaker.error_rate == 0.0


def test_policy_validation_names_the_field() -> None:
    with pytest.raises(PolicyError, match=r"policy\.providers"):
        InvocationPolicy(providers=())
    with pytest.raises(PolicyError, match="unique"):
        InvocationPolicy(providers=("a", "a"))
    with pytest.raises(PolicyError, match=r"circuit\.min_calls"):
        CircuitPolicy(window=3, min_calls=5)
    with pytest.raises(PolicyError, match=r"backoff\.multiplier"):
        BackoffPolicy(multiplier=0.5)
    with pytest.raises(PolicyError, match=r"cost_caps\.llm_tokens_per_turn"):
        CostCaps(llm_tokens_per_turn=0)


def test_backoff_grows_and_honours_retry_after_within_cap() -> None:
    backoff = BackoffPolicy(initial_ms=100, multiplier=2, max_ms=1000)
    assert [backoff.delay_ms(i) for i in (1, 2, 3, 4, 5)] == [100, 200, 400, 800, 1000]
    assert backoff.delay_ms(1, retry_after_s=0.5) == 500
    assert backoff.delay_ms(1, retry_after_s=30) == 1000


def _health(now_ms: int, expires_ms: int, **statuses: ProviderStatus) -> ProviderHealth:
    meta = SnapshotMeta(snapshot_id="h1", version=1, issued_at_ms=now_ms, expires_at_ms=expires_ms)
    return ProviderHealth(
        meta=meta, providers={k: ProviderHealthEntry(status=v) for k, v in statuses.items()}
    )


def test_routing_uses_fresh_signals_and_falls_back_to_default_order() -> None:
    allowed = ("a", "b", "c")
    missing = order_providers(allowed, None)
    assert missing.order == allowed and missing.source == "default"
    assert "signals unavailable" in missing.reason

    health = _health(1000, 5000, a=ProviderStatus.UNHEALTHY, b=ProviderStatus.HEALTHY)
    decision = order_providers(allowed, RoutingSignals(now_ms=2000, health=health))
    assert decision.order == ("b", "c", "a") and decision.source == "signals"
    assert "health" in decision.reason

    stale = order_providers(allowed, RoutingSignals(now_ms=6000, health=health))
    assert stale.order == allowed and stale.source == "default" and "stale" in stale.reason

    priced = order_providers(
        allowed,
        RoutingSignals(now_ms=2000, prices={"a": 3.0, "b": 2.0, "c": 1.0}, prices_as_of_ms=1990),
    )
    assert priced.order == ("c", "b", "a") and "price" in priced.reason
    old_prices = order_providers(
        allowed, RoutingSignals(now_ms=200_000, prices={"c": 1.0}, prices_as_of_ms=0)
    )
    assert old_prices.order == allowed and old_prices.source == "default"


def test_policy_rules_select_chain_per_tenant_and_language() -> None:
    rules = (
        RoutingRule(when={"tenant": "acme"}, providers=("anthropic", "openai"), rule_id="acme"),
        RoutingRule(when={"language": "de"}, providers=("deepgram",), rule_id="german"),
    )
    chain, why = choose_chain(rules, {"tenant": "acme", "language": "de"}, ("local",))
    assert chain == ("anthropic", "openai") and "rule=acme" in why
    chain, why = choose_chain(rules, {"tenant": "x", "language": "de"}, ("local",))
    assert chain == ("deepgram",) and "german" in why
    chain, why = choose_chain(rules, {"tenant": "x"}, ("local",))
    assert chain == ("local",) and "default" in why


def test_cost_meter_caps_per_turn_and_session_and_summarises() -> None:
    meter = CostMeter(
        "s1",
        CostCaps(llm_tokens_per_turn=10, llm_tokens_per_session=15, tts_chars_per_session=100),
        PriceTable(per_1k_llm_tokens={"openai": 2.0}, per_1k_tts_chars={"eleven": 30.0}),
        tenant_id="acme",
    )
    meter.begin_turn()
    assert meter.allowance(UsageKind.LLM_TOKENS) == 10
    meter.charge(UsageKind.LLM_TOKENS, "openai", 8)
    assert meter.allowance(UsageKind.LLM_TOKENS) == 2
    meter.begin_turn()
    assert meter.allowance(UsageKind.LLM_TOKENS) == 7  # session cap is now tighter
    meter.charge(UsageKind.TTS_CHARS, "eleven", 40)
    meter.charge(UsageKind.STT_AUDIO_SECONDS, "pocketsphinx", 2.5)
    assert meter.allowance(UsageKind.STT_AUDIO_SECONDS) is None
    summary = meter.summary()
    assert summary.turns == 2 and summary.llm_tokens == 8 and summary.tts_characters == 40
    assert summary.stt_audio_seconds == 2.5 and summary.tenant_id == "acme"
    assert summary.estimated_cost_usd == pytest.approx(8 / 1000 * 2.0 + 40 / 1000 * 30.0)
    exported = msgspec.json.decode(msgspec.json.encode(summary))
    assert exported["by_provider"]["openai"]["llm_tokens"] == 8
