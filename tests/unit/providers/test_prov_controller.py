"""InvocationController: retry, fallback, budget, circuit, cancel, caps, signals (F-046..F-060,
F-133, F-136, F-058). Providers are ScriptedLLM adapters (real adapter subclasses)."""

from __future__ import annotations

from typing import Any

import jsonschema
import msgspec
import pytest

from rspp.contracts import ControlSignal, SignalName
from rspp.providers import (
    BackoffPolicy,
    ChatMessage,
    CircuitPolicy,
    CircuitRegistry,
    CostCapExceeded,
    CostCaps,
    CostMeter,
    InvocationContext,
    InvocationPolicy,
    LLMController,
    LLMRequest,
    Outcome,
    ProviderCallError,
    ProviderMetricsRecorder,
)

pytestmark = pytest.mark.unit

REQUEST = LLMRequest(messages=(ChatMessage("user", "hi"),))


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def _controller(
    providers: dict[str, Any], clock: Any, signals: list[ControlSignal], **policy: Any
) -> LLMController:
    meter = policy.pop("meter", None)
    circuits = policy.pop("circuits", None)
    ctx = InvocationContext(
        session_id="sess-1", pipeline_version="v1", authority_epoch=3, turn_id="turn-1",
        clock=clock,
    )  # fmt: skip
    pol = InvocationPolicy(
        providers=tuple(providers),
        backoff=policy.pop("backoff", BackoffPolicy(initial_ms=10, max_ms=100)),
        **policy,
    )
    return LLMController(providers, pol, ctx, sink=signals.append, circuits=circuits, meter=meter)


async def test_retry_then_fallback_emits_valid_signals(
    clock: Any, scripted: Any, reference_schema: dict[str, Any]
) -> None:
    primary = scripted("primary", clock=clock)
    secondary = scripted("secondary", reply="from backup", clock=clock)
    primary.script = [Outcome.RATE_LIMITED, Outcome.TIMEOUT, Outcome.RATE_LIMITED]
    signals: list[ControlSignal] = []
    ctl = _controller({"primary": primary, "secondary": secondary}, clock, signals, max_retries=2)
    start = clock.now_ns
    text = "".join([d async for d in ctl.stream(REQUEST)])
    assert text == "from backup"
    assert primary.calls == 3 and secondary.calls == 1
    assert (clock.now_ns - start) / 1e6 == pytest.approx(10 + 20)  # backoff 10 ms then 20 ms
    names = [s.signal for s in signals]
    assert names == [SignalName.PROVIDER_ERROR] * 3 + [SignalName.PROVIDER_SWITCH]
    switch = signals[-1]
    assert "from=primary to=secondary" in (switch.reason or "")
    assert "outcome=rate_limited" in (switch.reason or "")  # original error context (F-133)
    assert [i.outcome for i in ctl.invocations] == [
        Outcome.RATE_LIMITED, Outcome.TIMEOUT, Outcome.RATE_LIMITED, Outcome.SUCCESS,
    ]  # fmt: skip
    ids = {i.invocation_id for i in ctl.invocations}
    assert len(ids) == 4
    validator = _validator(reference_schema)
    for signal in signals:
        record = msgspec.to_builtins(signal)
        validator.validate(record)
        assert record["emitted_by"] == "RK-11" and record["lane"] == "ControlLane"
    assert signals[0].provider_invocation_id == ctl.invocations[0].invocation_id


async def test_retries_stop_when_budget_is_insufficient(clock: Any, scripted: Any) -> None:
    flaky = scripted("flaky", clock=clock)
    flaky.script = [Outcome.OVERLOAD] * 5
    budget = {"ms": 35}

    def remaining() -> int:
        return budget["ms"] - (clock.now_ns - start) // 1_000_000

    start = clock.now_ns
    signals: list[ControlSignal] = []
    ctl = _controller(
        {"flaky": flaky}, clock, signals, max_retries=5, remaining_budget_ms=remaining,
        min_attempt_ms=10,
    )  # fmt: skip
    with pytest.raises(ProviderCallError) as info:
        _ = [d async for d in ctl.stream(REQUEST)]
    # the budget, not the provider's error, ended the call: the budget outcome (F-059)
    assert info.value.outcome is Outcome.TIMEOUT and info.value.code == "budget_exhausted"
    assert isinstance(info.value.__cause__, ProviderCallError)
    assert info.value.__cause__.outcome is Outcome.OVERLOAD
    # after attempt 1, 35 - 10 ms backoff leaves >= 10 ms: retry; after attempt 2 only
    # 25 ms remain and a 20 ms backoff would leave 5 ms < min_attempt_ms: stop
    assert flaky.calls == 2
    assert (clock.now_ns - start) // 1_000_000 == 10
    exhausted = [s for s in signals if s.signal.value == "budget_exhausted"]
    assert len(exhausted) == 1 and exhausted[0].emitted_by.value == "RK-17"
    assert "remaining_budget_ms=25" in (exhausted[0].reason or "")


async def test_an_attempt_runs_before_its_idle_timeout_is_judged(
    clock: Any, scripted: Any
) -> None:
    """A zero idle timeout still lets the attempt's first step run: the error it has by
    then is the outcome, not ``timeout``. (The 25 ms attempt above timed out under load: the
    process was descheduled past the timeout before the guard's first check, and the
    attempt never ran.)"""
    failing = scripted("failing", clock=clock)
    failing.script = [Outcome.OVERLOAD]
    with pytest.raises(ProviderCallError) as info:
        _ = [d async for d in failing.stream(REQUEST, timeout_ms=0)]
    assert info.value.outcome is Outcome.OVERLOAD and failing.calls == 1


async def test_non_retryable_errors_are_not_retried_or_failed_over(
    clock: Any, scripted: Any
) -> None:
    primary = scripted("primary", clock=clock)
    backup = scripted("backup", clock=clock)
    primary.script = [Outcome.SAFETY_BLOCK]
    ctl = _controller({"primary": primary, "backup": backup}, clock, [])
    with pytest.raises(ProviderCallError) as info:
        _ = [d async for d in ctl.stream(REQUEST)]
    assert info.value.outcome is Outcome.SAFETY_BLOCK and backup.calls == 0


async def test_fallback_only_when_policy_allows(clock: Any, scripted: Any) -> None:
    primary = scripted("primary", clock=clock)
    backup = scripted("backup", clock=clock)
    primary.script = [Outcome.INTERNAL]
    ctl = _controller(
        {"primary": primary, "backup": backup}, clock, [], allow_fallback=False, max_retries=0
    )
    with pytest.raises(ProviderCallError):
        _ = [d async for d in ctl.stream(REQUEST)]
    assert backup.calls == 0


async def test_circuit_opens_skips_provider_then_half_open_probe_recovers(
    clock: Any, scripted: Any, reference_schema: dict[str, Any]
) -> None:
    primary = scripted("primary", reply="primary ok", clock=clock)
    backup = scripted("backup", reply="backup ok", clock=clock)
    circuits = CircuitRegistry(clock)
    circuit = CircuitPolicy(error_rate_threshold=0.6, window=3, min_calls=3, cooldown_ms=500)
    signals: list[ControlSignal] = []
    ctl = _controller(
        {"primary": primary, "backup": backup}, clock, signals, max_retries=0,
        circuit=circuit, circuits=circuits,
    )  # fmt: skip
    primary.script = [Outcome.OVERLOAD] * 3
    for _ in range(3):
        assert "".join([d async for d in ctl.stream(REQUEST)]) == "backup ok"
    opened = [s for s in signals if s.signal is SignalName.CIRCUIT_EVENT]
    assert len(opened) == 1 and "closed->open" in (opened[0].reason or "")
    assert "threshold=0.60" in (opened[0].reason or "")
    calls = primary.calls
    assert "".join([d async for d in ctl.stream(REQUEST)]) == "backup ok"
    assert primary.calls == calls  # open circuit: primary skipped
    assert "cause=circuit_open" in (signals[-1].reason or "")
    clock.advance_ms(500)
    assert "".join([d async for d in ctl.stream(REQUEST)]) == "primary ok"
    transitions = [s.reason for s in signals if s.signal is SignalName.CIRCUIT_EVENT]
    assert any("open->half_open" in (r or "") for r in transitions)
    assert any("half_open->closed" in (r or "") for r in transitions)
    validator = _validator(reference_schema)
    for signal in signals:
        validator.validate(msgspec.to_builtins(signal))


async def test_controller_cancel_stops_stream_and_prevents_fallback(
    clock: Any, scripted: Any
) -> None:
    primary = scripted("primary", reply="one two three four five six", clock=clock)
    backup = scripted("backup", clock=clock)
    ctl = _controller({"primary": primary, "backup": backup}, clock, [])
    got: list[str] = []
    async for delta in ctl.stream(REQUEST):
        got.append(delta)
        if len(got) == 2:
            ctl.cancel("barge_in")
    assert len(got) == 2 and backup.calls == 0
    assert ctl.invocations[-1].outcome is Outcome.CANCELLED


async def test_cost_caps_truncate_then_refuse_and_emit_budget_signals(
    clock: Any, scripted: Any, reference_schema: dict[str, Any]
) -> None:
    llm = scripted("llm", reply="a b c d e f g h", clock=clock)
    meter = CostMeter("sess-1", CostCaps(llm_tokens_per_turn=5, llm_tokens_per_session=7))
    signals: list[ControlSignal] = []
    ctl = _controller({"llm": llm}, clock, signals, meter=meter)
    meter.begin_turn()
    assert len([d async for d in ctl.stream(REQUEST)]) == 5
    assert ctl.invocations[-1].truncated and ctl.invocations[-1].outcome is Outcome.SUCCESS
    meter.begin_turn()
    assert len([d async for d in ctl.stream(REQUEST)]) == 2  # session cap 7
    meter.begin_turn()
    with pytest.raises(CostCapExceeded) as info:
        _ = [d async for d in ctl.stream(REQUEST)]
    assert info.value.outcome is Outcome.POLICY_BLOCK and not info.value.retryable
    budget = [s for s in signals if s.signal is SignalName.BUDGET_EXHAUSTED]
    assert [("truncate" in (s.reason or ""), "refuse" in (s.reason or "")) for s in budget] == [
        (True, False), (True, False), (False, True),
    ]  # fmt: skip
    validator = _validator(reference_schema)
    for signal in budget:
        validator.validate(msgspec.to_builtins(signal))
    assert meter.summary().llm_tokens == 7 and meter.summary().cap_enforcements == 3


async def test_metrics_are_standard_across_invocations(clock: Any, scripted: Any) -> None:
    recorder = ProviderMetricsRecorder()
    llm = scripted("llm", reply="alpha beta", clock=clock, metrics=recorder)
    llm.script = [Outcome.RATE_LIMITED]
    ctl = _controller({"llm": llm}, clock, [])
    _ = [d async for d in ctl.stream(REQUEST)]
    failed, ok = recorder.invocations
    assert failed.labels() == {"provider": "llm", "kind": "llm", "outcome": "rate_limited"}
    assert failed.metrics.error_code == "scripted_rate_limited"
    assert ok.metrics.retries == 1 and ok.metrics.items_out == 2
    assert ok.metrics.bytes_out == len("alpha beta") and ok.metrics.bytes_in == 2
    assert ok.metrics.time_to_first_output_ms is not None and ok.metrics.latency_ms is not None
    assert recorder.counters[("llm", "llm", "success")] == 1


async def test_sticky_fallback_serves_subsequent_segments_from_the_secondary(
    clock: Any, scripted: Any
) -> None:
    primary = scripted("primary", reply="p", clock=clock)
    secondary = scripted("secondary", reply="s", clock=clock)
    primary.script = [Outcome.TIMEOUT]
    signals: list[ControlSignal] = []
    ctl = _controller(
        {"primary": primary, "secondary": secondary}, clock, signals, max_retries=0,
        sticky_fallback=True,
    )  # fmt: skip
    outputs = ["".join([d async for d in ctl.stream(REQUEST)]) for _ in range(1)]
    outputs += ["".join([d async for d in ctl.stream(REQUEST)]) for _ in range(2)]
    assert outputs == ["s", "s", "s"] and primary.calls == 1  # later segments: secondary
    assert ctl.last_decision is not None and "sticky fallback" in ctl.last_decision.reason
    assert [s.signal for s in signals].count(SignalName.PROVIDER_SWITCH) == 1


async def test_health_signals_steer_routing_and_routing_returns_on_recovery(
    clock: Any, scripted: Any
) -> None:
    from rspp.contracts import (
        ProviderHealth,
        ProviderHealthEntry,
        ProviderStatus,
        SnapshotMeta,
    )
    from rspp.providers import RoutingSignals

    primary = scripted("primary", reply="p", clock=clock)
    secondary = scripted("secondary", reply="s", clock=clock)
    status = {"primary": ProviderStatus.UNHEALTHY}

    def signals_now() -> RoutingSignals:
        meta = SnapshotMeta(snapshot_id="h", version=1, issued_at_ms=0, expires_at_ms=10**15)
        entries = {k: ProviderHealthEntry(status=v) for k, v in status.items()}
        return RoutingSignals(
            now_ms=clock.wall_ms(), health=ProviderHealth(meta=meta, providers=entries)
        )

    ctx = InvocationContext(session_id="s", pipeline_version="v", authority_epoch=1, clock=clock)
    ctl = LLMController(
        {"primary": primary, "secondary": secondary},
        InvocationPolicy(providers=("primary", "secondary")),
        ctx,
        signals=signals_now,
    )
    assert "".join([d async for d in ctl.stream(REQUEST)]) == "s"
    assert ctl.last_decision is not None and ctl.last_decision.source == "signals"
    status["primary"] = ProviderStatus.HEALTHY
    assert "".join([d async for d in ctl.stream(REQUEST)]) == "p"
    assert primary.calls == 1
