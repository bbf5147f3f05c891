"""InvocationController: retries within budget, circuit breaking, switch and fallback.

One controller serves one modality of one session. For each call it orders the
allowed providers (:func:`~rspp.providers.order_providers`), skips providers
whose circuit is open, retries retryable failures with backoff while the
remaining turn budget covers another attempt (F-046, F-059), then falls back to
the next provider (F-047, F-133) and emits ``provider_error``,
``circuit_event`` and ``provider_switch`` control signals (RK-11, F-136).

A failure after output was already yielded is not retried (it would duplicate
output); it is reported and raised. ``cancel(reason)`` stops the current
invocation at once and prevents any further retry or fallback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

from rspp.contracts import Emitter, SignalName
from rspp.providers._base import Provider
from rspp.providers._circuit import CircuitRegistry, CircuitState, CircuitTransition
from rspp.providers._context import InvocationContext, SignalSink
from rspp.providers._cost import CostCapExceeded, CostMeter, UsageKind
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._policy import InvocationPolicy, PolicyError
from rspp.providers._routing import RoutingDecision, RoutingSignals, order_providers
from rspp.providers._secrets import redact

if TYPE_CHECKING:
    from rspp.kernel._handles import CancelToken

__all__ = ["BUDGET_EXHAUSTED", "InvocationController", "ReplayableInput", "StickyChoice"]

#: ``ProviderCallError.code`` of a call the remaining turn budget ended (F-059)
BUDGET_EXHAUSTED = "budget_exhausted"

log = logging.getLogger("rspp.providers")

P = TypeVar("P", bound=Provider)
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741

_FALLBACK_OUTCOMES = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.OVERLOAD,
        Outcome.RATE_LIMITED,
        Outcome.DISCONNECTED,
        Outcome.INTERNAL,
        Outcome.AUTH_ERROR,
    }
)


class ReplayableInput(Generic[I]):
    """Lets a retry re-send the input an earlier attempt already consumed."""

    def __init__(self, source: AsyncIterable[I]) -> None:
        self._source = source.__aiter__()
        self._seen: list[I] = []
        self._exhausted = False

    def fresh(self) -> AsyncIterator[I]:
        async def gen() -> AsyncIterator[I]:
            for item in list(self._seen):
                yield item
            while not self._exhausted:
                try:
                    item = await self._source.__anext__()
                except StopAsyncIteration:
                    self._exhausted = True
                    return
                self._seen.append(item)
                yield item

        return gen()


class StickyChoice:
    """The provider a sticky fallback stays on (F-047), shared by the controllers of one
    modality in one session: a fallback that answered in one call (one speech segment,
    one turn) serves the session's later calls first, until it fails in turn."""

    __slots__ = ("provider",)

    def __init__(self) -> None:
        self.provider: str | None = None


class InvocationController(Generic[P]):
    """Runs calls of one modality against an ordered set of providers."""

    def __init__(
        self,
        providers: Mapping[str, P],
        policy: InvocationPolicy,
        context: InvocationContext,
        *,
        sink: SignalSink | None = None,
        circuits: CircuitRegistry | None = None,
        signals: Callable[[], RoutingSignals | None] | None = None,
        parent: CancelToken | None = None,
        meter: CostMeter | None = None,
        sticky: StickyChoice | None = None,
    ) -> None:
        missing = [pid for pid in policy.providers if pid not in providers]
        if missing:
            raise PolicyError(
                f"policy.providers names {missing} but only {sorted(providers)} are configured; "
                "add the adapters or remove them from the policy"
            )
        self.providers = providers
        self.policy = policy
        self.context = context
        self._sink = sink
        self.circuits = circuits or CircuitRegistry(context.clock)
        self._signals = signals
        self._parent = parent
        self.meter = meter
        self.invocations: list[ProviderInvocation] = []
        self.current: ProviderInvocation | None = None
        self.last_decision: RoutingDecision | None = None
        self._cancel_reason: str | None = None
        #: where ``policy.sticky_fallback`` keeps the provider that answered after a failover
        self.sticky = sticky if sticky is not None else StickyChoice()

    # -- public -----------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the running invocation and stop retries/fallback for this call."""
        self._cancel_reason = reason
        if self.current is not None:
            self.current.cancel_scope.cancel(reason)

    def decide(self) -> RoutingDecision:
        allowed = self.policy.providers if self.policy.allow_fallback else self.policy.providers[:1]
        decision = order_providers(allowed, self._signals() if self._signals else None)
        sticky = self.sticky.provider
        if (
            self.policy.sticky_fallback
            and decision.source == "default"
            and sticky is not None
            and sticky in decision.order
            and decision.order[0] != sticky
        ):
            rest = tuple(p for p in decision.order if p != sticky)
            decision = RoutingDecision(
                (sticky, *rest),
                "default",
                f"{decision.reason}; sticky fallback to {sticky} after an earlier failover",
            )
        self.last_decision = decision
        return decision

    # -- signals ------------------------------------------------------------
    def _emit(
        self,
        name: SignalName,
        reason: str,
        invocation_id: str | None,
        *,
        emitted_by: Emitter = Emitter.RK_11,
    ) -> None:
        if self._sink is None:
            return
        signal = self.context.signal(
            name, reason, provider_invocation_id=invocation_id, emitted_by=emitted_by
        )
        try:
            self._sink(signal)
        except Exception:  # a broken sink never breaks the call path
            log.exception("provider signal sink failed for %s", name.value)

    def _emit_circuit(
        self, transition: CircuitTransition | None, invocation_id: str | None,
        error: ProviderCallError | None = None,
    ) -> None:
        """``circuit_event`` of a transition; ``error``: the failure that caused it, named by
        its normalised outcome and code only (never its message: it may quote the request)."""
        if transition is not None:
            cause = "" if error is None else (
                f" last_error={error.code or error.outcome.value} outcome={error.outcome.value}")
            self._emit(SignalName.CIRCUIT_EVENT, transition.reason() + cause, invocation_id)

    # -- turn budget (F-059) ---------------------------------------------------
    def _budget_exhausted(self, pid: str, budget_ms: int, delay_ms: int) -> ProviderCallError:
        """The remaining turn budget cannot cover another attempt: ``budget_exhausted``.

        Emits the RK-17 ``budget_exhausted`` signal and returns the error that ends the
        call with the budget outcome (``timeout``, code ``budget_exhausted``).
        """
        need = max(1, self.policy.min_attempt_ms)
        wait = f" after a {delay_ms} ms backoff" if delay_ms else ""
        reason = (f"budget_exhausted provider={pid} remaining_budget_ms={budget_ms} "
                  f"min_attempt_ms={need}{wait}; no further attempt")
        current = self.invocations[-1].invocation_id if self.invocations else None
        self._emit(SignalName.BUDGET_EXHAUSTED, reason, current, emitted_by=Emitter.RK_17)
        return ProviderCallError(
            f"remaining turn budget {budget_ms} ms cannot cover another attempt{wait} "
            f"(min_attempt_ms={need})",
            outcome=Outcome.TIMEOUT, provider=pid, code=BUDGET_EXHAUSTED,
        )

    # -- cost caps (F-058) ---------------------------------------------------
    def _enforce(self, kind: UsageKind, action: str, invocation_id: str | None) -> None:
        """Count a cap enforcement and emit ``budget_exhausted`` (RK-17, budgets)."""
        if self.meter is None:
            return
        self.meter.cap_enforcements += 1
        self._emit(
            SignalName.BUDGET_EXHAUSTED,
            self.meter.cap_reason(kind, action),
            invocation_id,
            emitted_by=Emitter.RK_17,
        )

    def _precheck(self, kind: UsageKind) -> None:
        if self.meter is None:
            return
        allowance = self.meter.allowance(kind)
        if allowance is not None and allowance <= 0:
            # the refused call is an invocation of the chain's first provider that ends
            # ``policy_block`` without reaching it (F-160): it has its own id and outcome
            pid = next(iter(self.providers), None)
            inv_id = None
            if pid is not None:
                inv = self.providers[pid].new_invocation(parent=self._parent)
                now = self.context.clock.monotonic_ns()
                inv.metrics.started_ns = inv.metrics.ended_ns = now
                inv.outcome, inv.error_code = Outcome.POLICY_BLOCK, "cost_cap"
                self.invocations.append(inv)
                inv_id = inv.invocation_id
            self._enforce(kind, "refuse", inv_id)
            raise CostCapExceeded(self.meter.cap_reason(kind, "refuse"))

    # -- the loop -------------------------------------------------------------
    async def _run(
        self, start: Callable[[P, ProviderInvocation, int], AsyncIterator[T]]
    ) -> AsyncGenerator[T, None]:
        self._cancel_reason = None
        decision = self.decide()
        policy = self.policy
        clock = self.context.clock
        last_error: ProviderCallError | None = None
        previous: str | None = None
        skipped: list[str] = []
        cut: tuple[int, int] | None = None
        for pid in decision.order:
            provider = self.providers[pid]
            breaker = self.circuits.get(pid, policy.circuit)
            allowed, transition = breaker.allow()
            self._emit_circuit(transition, None)
            if not allowed:
                skipped.append(pid)
                continue
            if previous is not None or skipped:
                from_pid = previous or skipped[-1]
                cause = (
                    f"outcome={last_error.outcome.value} code={last_error.code}"
                    if last_error is not None and previous is not None
                    else "circuit_open"
                )
                self._emit(
                    SignalName.PROVIDER_SWITCH,
                    f"provider_switch from={from_pid} to={pid} cause={cause} "
                    f"routing={decision.source}: {decision.reason}",
                    None,
                )
            retries = 0
            cut = None
            while True:
                if self._cancel_reason is not None:
                    return
                budget = policy.budget_ms()
                if budget is not None and budget < max(1, policy.min_attempt_ms):
                    raise self._budget_exhausted(pid, budget, 0) from last_error
                timeout_ms = policy.timeout_ms if budget is None else min(policy.timeout_ms, budget)
                inv = provider.new_invocation(parent=self._parent, attempt=retries + 1)
                inv.metrics.retries = retries
                self.current = inv
                self.invocations.append(inv)
                yielded = False
                try:
                    stream = start(provider, inv, timeout_ms)
                    async with contextlib.aclosing(stream):  # type: ignore[type-var]
                        async for item in stream:
                            yielded = True
                            yield item
                except ProviderCallError as err:
                    last_error = err
                    if err.outcome.counts_against_health:
                        self._emit_circuit(breaker.record(False), inv.invocation_id, err)
                    else:
                        breaker.release_probe()
                    self._emit(
                        SignalName.PROVIDER_ERROR,
                        f"provider={pid} outcome={err.outcome.value} code={err.code} "
                        f"attempt={retries + 1} retryable={str(err.retryable).lower()} "
                        f"circuit={breaker.state.value} error_rate={breaker.error_rate:.2f}",
                        inv.invocation_id,
                    )
                    log.warning("provider %s failed: %s", pid, redact(str(err)))
                    if yielded or err.outcome not in _FALLBACK_OUTCOMES:
                        raise
                    if (
                        err.retryable
                        and retries < policy.max_retries
                        and breaker.state is CircuitState.CLOSED
                    ):
                        delay_ms = policy.backoff.delay_ms(retries + 1, err.retry_after_s)
                        budget = policy.budget_ms()
                        if budget is None or budget - delay_ms >= max(1, policy.min_attempt_ms):
                            await clock.sleep(delay_ms / 1000)
                            retries += 1
                            continue
                        cut = (budget, delay_ms)  # the budget, not the policy, ended retrying
                    break
                except BaseException:
                    breaker.release_probe()
                    raise
                else:
                    if inv.outcome is Outcome.CANCELLED:
                        breaker.release_probe()
                    else:
                        self._emit_circuit(breaker.record(True), inv.invocation_id)
                        if self.policy.sticky_fallback:
                            primary = self.policy.providers[0]
                            self.sticky.provider = None if pid == primary else pid
                    return
                finally:
                    self.current = None
            previous = pid
        if last_error is not None:
            if cut is not None:
                raise self._budget_exhausted(previous or "none", *cut) from last_error
            raise last_error
        raise ProviderCallError(
            f"every allowed provider has an open circuit: {skipped}",
            outcome=Outcome.OVERLOAD,
            provider=",".join(skipped) or "none",
            code="circuit_open",
        )
