"""Normalised provider outcomes and the provider error classes (F-055, F-160).

Every provider call ends in exactly one :class:`Outcome`. Failures raise a
:class:`ProviderCallError` (a :class:`rspp.errors.ProviderError`) that carries the
outcome, whether retrying may help, the provider id and, for HTTP-like
providers, the status code and ``Retry-After`` hint. Messages never contain
request payloads or secrets.
"""

from __future__ import annotations

from enum import StrEnum

from rspp.errors import ProviderError

__all__ = [
    "RETRYABLE_OUTCOMES",
    "Outcome",
    "ProviderCallError",
    "outcome_for_status",
]


class Outcome(StrEnum):
    """Normalised outcome class of one provider invocation."""

    SUCCESS = "success"
    TIMEOUT = "timeout"
    OVERLOAD = "overload"
    RATE_LIMITED = "rate_limited"
    AUTH_ERROR = "auth_error"
    BAD_REQUEST = "bad_request"
    SAFETY_BLOCK = "safety_block"
    DISCONNECTED = "disconnected"
    INTERNAL = "internal"
    #: a cost cap or routing policy refused the call (never sent to the provider)
    POLICY_BLOCK = "policy_block"
    #: the caller cancelled the invocation (barge-in, turn cancel); not an error
    CANCELLED = "cancelled"

    @property
    def retryable(self) -> bool:
        """True when a retry (same or other provider) may succeed."""
        return self in RETRYABLE_OUTCOMES

    @property
    def is_failure(self) -> bool:
        return self not in (Outcome.SUCCESS, Outcome.CANCELLED)

    @property
    def counts_against_health(self) -> bool:
        """Whether the circuit breaker counts this outcome as a provider failure."""
        return self in RETRYABLE_OUTCOMES or self is Outcome.AUTH_ERROR


RETRYABLE_OUTCOMES = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.OVERLOAD,
        Outcome.RATE_LIMITED,
        Outcome.DISCONNECTED,
        Outcome.INTERNAL,
    }
)


class ProviderCallError(ProviderError):
    """A provider invocation failed with a normalised outcome.

    ``code`` is the provider's own error code (HTTP status, WebSocket close code
    or vendor error type) kept for debugging; ``retry_after_s`` is the server's
    back-off hint when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome,
        provider: str = "unknown",
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome
        self.provider = provider
        self.code = code
        self.retry_after_s = retry_after_s

    @property
    def retryable(self) -> bool:
        return self.outcome.retryable

    def __str__(self) -> str:
        code = f" code={self.code}" if self.code else ""
        return f"{self.provider}: {self.outcome.value}{code}: {self.message}"

    def __repr__(self) -> str:
        return f"ProviderCallError({str(self)!r})"


def outcome_for_status(status: int) -> Outcome:
    """Map an HTTP (or WebSocket handshake) status code to an outcome."""
    if status in (401, 403):
        return Outcome.AUTH_ERROR
    if status == 408:
        return Outcome.TIMEOUT
    if status == 429:
        return Outcome.RATE_LIMITED
    if status in (502, 503, 504, 529):
        return Outcome.OVERLOAD
    if status >= 500:
        return Outcome.INTERNAL
    if status >= 400:
        return Outcome.BAD_REQUEST
    return Outcome.SUCCESS
