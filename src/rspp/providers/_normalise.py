"""Error normalisation: any exception from an adapter becomes a ProviderCallError."""

from __future__ import annotations

import asyncio

from rspp.providers._outcome import Outcome, ProviderCallError, outcome_for_status
from rspp.providers._secrets import redact

__all__ = ["normalise_error", "parse_retry_after"]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def normalise_error(exc: BaseException, provider: str) -> ProviderCallError:
    """Map an exception to a normalised :class:`ProviderCallError` (message redacted)."""
    if isinstance(exc, ProviderCallError):
        if exc.provider == "unknown":
            exc.provider = provider
        return exc
    # imported on the error path: an offline process (``rspp run`` of the offline
    # assistant) never loads the HTTP and WebSocket client libraries (~0.15 s CPU)
    import httpx
    import websockets.exceptions

    outcome = Outcome.INTERNAL
    code: str | None = type(exc).__name__
    retry_after: float | None = None
    if isinstance(exc, httpx.TimeoutException | TimeoutError | asyncio.TimeoutError):
        outcome = Outcome.TIMEOUT
    elif isinstance(exc, httpx.HTTPStatusError):
        outcome = outcome_for_status(exc.response.status_code)
        code = str(exc.response.status_code)
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
    elif isinstance(exc, websockets.exceptions.InvalidStatus):
        status = exc.response.status_code
        outcome = outcome_for_status(status)
        code = str(status)
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
    elif isinstance(exc, websockets.exceptions.ConnectionClosed):
        outcome = Outcome.DISCONNECTED
        rcvd = exc.rcvd
        code = f"ws_close_{rcvd.code}" if rcvd is not None else "ws_close_abnormal"
    elif isinstance(exc, httpx.TransportError | websockets.exceptions.WebSocketException | OSError):
        outcome = Outcome.DISCONNECTED
    message = redact(str(exc) or type(exc).__name__)
    return ProviderCallError(
        message, outcome=outcome, provider=provider, code=code, retry_after_s=retry_after
    )
