"""Error taxonomy, default actions and the dead-letter stream (F-131, F-132)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rspp.errors import ProviderError, RuntimeKernelError

if TYPE_CHECKING:
    from rspp.contracts import EventRecord
    from rspp.kernel._events import Event

__all__ = [
    "ERROR_ACTIONS",
    "DeadLetter",
    "NodeErrorInfo",
    "NodeHookError",
    "ResourceLimitError",
    "classify_error",
]

#: error_code -> (retryable, default action). Actions are deterministic.
ERROR_ACTIONS: dict[str, tuple[bool, str]] = {
    "schema_validation_error": (False, "reject"),
    "authority_epoch_mismatch": (False, "reject"),
    "provider_timeout": (True, "fallback"),
    "provider_overload": (True, "retry"),
    "runtime_internal_error": (False, "dead_letter"),
    # a provider call failed for good (the invocation controller spent its retries and
    # fallbacks: an internal, auth, bad-request or safety outcome): the node's event is
    # dead-lettered and its turn aborts ``provider_error`` (T10)
    "provider_error": (False, "dead_letter"),
    "resource_limit_exceeded": (False, "degrade"),
    "hook_timeout": (False, "abort"),
    # the remaining turn budget ended a provider call (F-059): the turn aborts on budget
    "budget_exhausted": (False, "abort"),
}


class NodeHookError(RuntimeKernelError):
    """A node lifecycle hook failed or exceeded its timeout."""


class ResourceLimitError(RuntimeKernelError):
    """An event exceeded a node's configured resource limit (F-107)."""


@dataclass(frozen=True, slots=True)
class NodeErrorInfo:
    """A classified node failure: code, node, actionable message, retryability, action."""

    error_code: str
    node_id: str
    message: str
    retryable: bool
    default_action: str
    turn_id: str | None = None
    event_seq: int | None = None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a node could not process, with the error and its contract record."""

    error: NodeErrorInfo
    event: Event
    record: EventRecord


def classify_error(
    exc: BaseException, node_id: str, *, has_fallback: bool, ev: Event | None = None
) -> NodeErrorInfo:
    """Map an exception to the taxonomy (F-131)."""
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        code = "provider_timeout"
        msg = f"node {node_id!r} exceeded its timeout; raise timeout_ms or add a fallback"
    elif isinstance(exc, ResourceLimitError):
        code = "resource_limit_exceeded"
        msg = f"node {node_id!r}: {exc}"
    elif isinstance(exc, ProviderError):
        outcome = str(getattr(exc, "outcome", "") or "")
        if getattr(exc, "code", None) == "budget_exhausted":
            code = "budget_exhausted"
        elif "overload" in outcome or "rate" in outcome:
            code = "provider_overload"
        elif "timeout" in outcome:
            code = "provider_timeout"
        else:
            code = "provider_error"
        msg = f"node {node_id!r} provider error: {exc}"
    elif isinstance(exc, ValueError | TypeError) and "schema" in str(exc):
        code = "schema_validation_error"
        msg = f"node {node_id!r} rejected an invalid event: {exc}"
    else:
        code = "runtime_internal_error"
        msg = f"node {node_id!r} raised {type(exc).__name__}: {exc}"
    retryable, action = ERROR_ACTIONS[code]
    if has_fallback and action in ("dead_letter", "retry", "fallback"):
        action = "fallback"
    elif action == "fallback":
        action = "dead_letter"
    return NodeErrorInfo(
        error_code=code, node_id=node_id, message=msg, retryable=retryable,
        default_action=action, turn_id=ev.turn_id if ev else None,
        event_seq=ev.seq if ev else None,
    )
