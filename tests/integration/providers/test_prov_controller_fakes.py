"""Controller against fake servers: retry then fallback on 429/timeouts, circuit breaker
open + half-open recovery, schema-valid signals and a secrets scan (F-046, F-047, F-057,
F-059, F-061, F-117, F-133, F-136, NF-011)."""

from __future__ import annotations

import logging
from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import ControlSignal, SignalName
from rspp.kernel import VirtualClock
from rspp.providers import (
    BackoffPolicy,
    ChatMessage,
    CircuitPolicy,
    CircuitRegistry,
    InvocationContext,
    InvocationPolicy,
    LLMController,
    LLMRequest,
    Outcome,
    ProviderCallError,
    ProviderMetricsRecorder,
    RedactingFilter,
)
from rspp.providers.remote import AnthropicLLM, OpenAIChatLLM
from rspp.testing.fakes import Fault

pytestmark = pytest.mark.integration

TEST_KEY = "sk-rspp-test-0123456789abcdef"  # same value the conftest fixture exports

REQUEST = LLMRequest(messages=(ChatMessage("user", "my card is 4111 1111"),), max_tokens=32)


def _ctx() -> InvocationContext:
    return InvocationContext(
        session_id="sess-int", pipeline_version="pv-1", authority_epoch=7, turn_id="turn-9"
    )


async def test_retry_then_fallback_on_429_and_timeouts(
    openai_fake: Any, anthropic_fake: Any, api_key_ref: str, reference_schema: dict[str, Any]
) -> None:
    ofake, ourl = openai_fake
    afake, aurl = anthropic_fake
    recorder = ProviderMetricsRecorder()
    openai = OpenAIChatLLM(base_url=ourl, api_key=api_key_ref, metrics=recorder)
    anthropic = AnthropicLLM(base_url=aurl, api_key=api_key_ref, metrics=recorder)
    ofake.faults.push(
        Fault("status", status=429, retry_after=0.01),
        Fault("stall", seconds=60.0),
        Fault("status", status=429, retry_after=0.01),
    )
    signals: list[ControlSignal] = []
    ctl = LLMController(
        {"openai": openai, "anthropic": anthropic},
        InvocationPolicy(
            providers=("openai", "anthropic"),
            # a 60 s stall against a 3 s timeout: every other request has 3 s to answer
            # on a busy machine (200 ms was not always enough for the fallback's answer)
            timeout_ms=3000,
            max_retries=2,
            backoff=BackoffPolicy(initial_ms=5, max_ms=50),
        ),
        _ctx(),
        sink=signals.append,
    )
    try:
        text = "".join([d async for d in ctl.stream(REQUEST)])
    finally:
        await openai.aclose()
        await anthropic.aclose()
    assert text.startswith("You asked: my card is")
    assert len(ofake.requests) == 3 and len(afake.requests) == 1
    assert [i.outcome for i in ctl.invocations] == [
        Outcome.RATE_LIMITED, Outcome.TIMEOUT, Outcome.RATE_LIMITED, Outcome.SUCCESS,
    ]  # fmt: skip
    assert [s.signal for s in signals] == [SignalName.PROVIDER_ERROR] * 3 + [
        SignalName.PROVIDER_SWITCH
    ]
    assert "cause=outcome=rate_limited code=429" in (signals[-1].reason or "")
    validator = jsonschema.Draft202012Validator(reference_schema)
    for signal in signals:
        record = msgspec.to_builtins(signal)
        validator.validate(record)
        # no request payload (the card number as sent, not a digit run a timestamp may hold)
        assert "4111 1111" not in msgspec.json.encode(signal).decode()
    assert [inv.metrics.retries for inv in recorder.invocations
            if inv.provider_id == "openai"] == [0, 1, 2]


async def test_circuit_opens_after_threshold_and_recovers_half_open(
    openai_fake: Any, anthropic_fake: Any, api_key_ref: str, reference_schema: dict[str, Any]
) -> None:
    ofake, ourl = openai_fake
    _afake, aurl = anthropic_fake
    openai = OpenAIChatLLM(base_url=ourl, api_key=api_key_ref)
    anthropic = AnthropicLLM(base_url=aurl, api_key=api_key_ref)
    # the cool-down runs on a virtual clock the test moves: on a busy machine 300 ms of real
    # time could pass between opening the circuit and the call that must find it open
    cooldown = VirtualClock(auto_advance=False)
    circuits = CircuitRegistry(cooldown)
    signals: list[ControlSignal] = []
    ctl = LLMController(
        {"openai": openai, "anthropic": anthropic},
        InvocationPolicy(
            providers=("openai", "anthropic"),
            max_retries=0,
            circuit=CircuitPolicy(error_rate_threshold=0.5, window=4, min_calls=2, cooldown_ms=300),
        ),
        _ctx(),
        sink=signals.append,
        circuits=circuits,
    )
    try:
        ofake.faults.push(Fault("status", status=503), Fault("status", status=503))
        for _ in range(2):
            assert [d async for d in ctl.stream(REQUEST)]
        assert circuits.states()["openai"].value == "open"
        served = len(ofake.requests)
        assert [d async for d in ctl.stream(REQUEST)]
        assert len(ofake.requests) == served  # open circuit: no request reached openai
        cooldown.advance(299)
        assert [d async for d in ctl.stream(REQUEST)]
        assert len(ofake.requests) == served  # 1 ms before the cool-down ends: still open
        cooldown.advance(1)
        [d async for d in ctl.stream(REQUEST)]
        assert len(ofake.requests) == served + 1 and ctl.invocations[-1].provider_id == "openai"
        assert circuits.states()["openai"].value == "closed"
    finally:
        await openai.aclose()
        await anthropic.aclose()
    circuit_reasons = [s.reason or "" for s in signals if s.signal is SignalName.CIRCUIT_EVENT]
    assert [r.split()[1] for r in circuit_reasons] == [
        "closed->open", "open->half_open", "half_open->closed",
    ]  # fmt: skip
    assert "provider=openai" in circuit_reasons[0] and "threshold=0.50" in circuit_reasons[0]
    validator = jsonschema.Draft202012Validator(reference_schema)
    for signal in signals:
        validator.validate(msgspec.to_builtins(signal))


async def test_secrets_never_appear_in_signals_logs_errors_or_reprs(
    openai_fake: Any, anthropic_fake: Any, api_key_ref: str, caplog: pytest.LogCaptureFixture
) -> None:
    ofake, ourl = openai_fake
    _afake, aurl = anthropic_fake
    openai = OpenAIChatLLM(base_url=ourl, api_key=api_key_ref)
    anthropic = AnthropicLLM(base_url=aurl, api_key=api_key_ref)
    ofake.faults.push(Fault("status", status=401, error_type=f"bad key {TEST_KEY}"))
    signals: list[ControlSignal] = []
    ctl = LLMController(
        {"openai": openai, "anthropic": anthropic},
        InvocationPolicy(providers=("openai", "anthropic"), max_retries=0),
        _ctx(),
        sink=signals.append,
    )
    root = logging.getLogger()
    redacting = RedactingFilter()
    for handler in (caplog.handler, *root.handlers):
        handler.addFilter(redacting)
    errors: list[str] = []
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("rspp.providers").debug("configured key %s", TEST_KEY)
            text = "".join([d async for d in ctl.stream(REQUEST)])
            ofake.faults.push(Fault("status", status=401, error_type=f"bad key {TEST_KEY}"))
            solo = LLMController(
                {"openai": openai}, InvocationPolicy(providers=("openai",)), _ctx(),
                sink=signals.append,
            )  # fmt: skip
            with pytest.raises(ProviderCallError) as info:
                _ = [d async for d in solo.stream(REQUEST)]
            errors += [str(info.value), repr(info.value)]
    finally:
        for handler in (caplog.handler, *root.handlers):
            handler.removeFilter(redacting)
        await openai.aclose()
        await anthropic.aclose()
    assert text
    # the key really was on the wire (so the scan below is meaningful)
    assert ofake.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    outputs = [
        caplog.text,
        *errors,
        *(msgspec.json.encode(s).decode() for s in signals),
        *(repr(i) for i in ctl.invocations),
        repr(openai),
        repr(openai._key),
    ]
    assert signals and caplog.records
    for output in outputs:
        assert TEST_KEY not in output
