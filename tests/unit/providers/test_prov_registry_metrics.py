"""Adapters built from configuration (F-055) and Prometheus metrics with standard labels
(F-065)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from rspp.providers import (
    ChatMessage,
    LLMRequest,
    Outcome,
    PolicyError,
    PrometheusMetricsSink,
    ProviderKind,
    SecretConfigError,
    create_provider,
)
from rspp.providers.offline import LocalResponderLLM
from rspp.providers.remote import OpenAIChatLLM

pytestmark = pytest.mark.unit


def test_create_provider_from_config_and_swap_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSPP_REG_KEY", "sk-registry-000111")
    local = create_provider("llm", {"type": "local-responder", "seed": 3})
    assert isinstance(local, LocalResponderLLM) and local.seed == 3
    ints_for_floats = create_provider("llm", {"type": "local-responder", "token_delay_ms": 2})
    assert isinstance(ints_for_floats, LocalResponderLLM)
    remote = create_provider(
        ProviderKind.LLM,
        {"type": "openai", "model": "m", "api_key": "env://RSPP_REG_KEY"},
        provider_id="primary-llm",
    )
    assert isinstance(remote, OpenAIChatLLM) and remote.provider_id == "primary-llm"
    assert "sk-registry-000111" not in repr(remote)


@pytest.mark.parametrize(
    ("kind", "config", "needle"),
    [
        ("video", {"type": "x"}, "is not a provider kind"),
        ("tts", {"type": "nope"}, "providers.type='nope': unknown tts adapter"),
        ("stt", {"type": "pocketsphinx", "colour": "red"}, "unknown option(s) ['colour']"),
        # wrong scalar types are named, not an AttributeError deep inside the adapter
        ("llm", {"type": "openai", "base_url": 3}, "option base_url=3 must be str, got int"),
        ("llm", {"type": "local-responder", "seed": "7"}, "option seed='7' must be int"),
        ("tts", {"type": "espeak", "sample_rate": True}, "option sample_rate=True must be int"),
    ],
)
def test_create_provider_errors_name_the_field(kind: str, config: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(PolicyError) as info:
        create_provider(kind, config)
    assert needle in str(info.value)


def test_raw_api_key_in_config_is_refused() -> None:
    with pytest.raises(SecretConfigError) as info:
        create_provider("llm", {"type": "anthropic", "api_key": "sk-ant-raw-secret-123"})
    assert "sk-ant-raw-secret-123" not in str(info.value)


async def test_prometheus_sink_exports_standard_series() -> None:
    registry = CollectorRegistry()
    sink = PrometheusMetricsSink(registry)
    llm = LocalResponderLLM(token_delay_ms=0, metrics=sink)
    request = LLMRequest(messages=(ChatMessage("user", "hello"),))
    _ = [d async for d in llm.stream(request)]
    slow = LocalResponderLLM("slow", token_delay_ms=300, metrics=sink)
    with pytest.raises(Exception) as info:
        _ = [d async for d in slow.stream(request, timeout_ms=20)]
    assert getattr(info.value, "outcome", None) is Outcome.TIMEOUT
    value = registry.get_sample_value
    ok = {"provider": "local-responder", "kind": "llm", "outcome": "success"}
    assert value("rspp_provider_invocations_total", ok) == 1
    assert value("rspp_provider_latency_ms_count", ok) == 1
    err = {"provider": "slow", "kind": "llm", "outcome": "timeout", "error_code": "timeout"}
    assert value("rspp_provider_errors_total", err) == 1
    out = {"provider": "local-responder", "kind": "llm", "direction": "out"}
    assert (value("rspp_provider_payload_bytes_total", out) or 0) > 0
