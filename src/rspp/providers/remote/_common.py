"""Shared helpers of remote adapters: API keys, HTTP error mapping, SSE parsing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from rspp.providers._normalise import parse_retry_after
from rspp.providers._outcome import Outcome, ProviderCallError, outcome_for_status
from rspp.providers._secrets import Secret, SecretConfigError, SecretRef, redact

__all__ = [
    "KeySource", "error_from_response", "iter_openai_chunks", "iter_sse", "key_header",
    "key_source", "vendor_outcome",
]

KeySource = Secret | SecretRef | None

#: vendor error "type" strings (OpenAI, Anthropic, ElevenLabs, Deepgram) -> outcome
_VENDOR_TYPES = {
    "overloaded_error": Outcome.OVERLOAD,
    "rate_limit_error": Outcome.RATE_LIMITED,
    "rate_limit_exceeded": Outcome.RATE_LIMITED,
    "insufficient_quota": Outcome.RATE_LIMITED,
    "quota_exceeded": Outcome.RATE_LIMITED,
    "too_many_concurrent_requests": Outcome.RATE_LIMITED,
    "authentication_error": Outcome.AUTH_ERROR,
    "permission_error": Outcome.AUTH_ERROR,
    "invalid_api_key": Outcome.AUTH_ERROR,
    "invalid_request_error": Outcome.BAD_REQUEST,
    "not_found_error": Outcome.BAD_REQUEST,
    "request_too_large": Outcome.BAD_REQUEST,
    "content_filter": Outcome.SAFETY_BLOCK,
    "content_policy_violation": Outcome.SAFETY_BLOCK,
    "api_error": Outcome.INTERNAL,
    "server_error": Outcome.INTERNAL,
    "timeout_error": Outcome.TIMEOUT,
}


def vendor_outcome(error_type: str | None, default: Outcome = Outcome.INTERNAL) -> Outcome:
    if not error_type:
        return default
    return _VENDOR_TYPES.get(error_type, default)


def key_source(api_key: str | Secret | SecretRef | None, *, field: str = "api_key") -> KeySource:
    """Accept a reference (``env://``/``file://``) or resolved Secret; refuse raw keys.

    A reference's current value is read once here, so the process redactor scrubs it from
    the moment the adapter is configured, before its first request (an unset or unreadable
    reference is reported by the first request, as before)."""
    if api_key is None or isinstance(api_key, Secret):
        return api_key
    ref = api_key if isinstance(api_key, SecretRef) else SecretRef(api_key, field=field)
    with contextlib.suppress(SecretConfigError):
        ref.resolve()  # registers the value with the redactor
    return ref


def resolve_key(source: KeySource) -> str | None:
    """Current key value (references are re-read per call so rotation applies)."""
    if source is None:
        return None
    if isinstance(source, Secret):
        return source.reveal()
    return source.resolve().reveal()


def key_header(source: KeySource, name: str, scheme: str = "") -> dict[str, str]:
    """The request header carrying the current key (``name: [scheme ]key``), re-read per
    call; empty without a key."""
    key = resolve_key(source)
    if key is None:
        return {}
    return {name: f"{scheme} {key}" if scheme else key}


def _error_type(body: Any) -> tuple[str | None, str | None]:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            etype = err.get("type") or err.get("code") or err.get("status")
            message = err.get("message")
            return (str(etype) if etype else None), (str(message) if message else None)
        if isinstance(err, str):
            return err, body.get("message") if isinstance(body.get("message"), str) else None
    return None, None


async def error_from_response(response: httpx.Response, provider: str) -> ProviderCallError:
    """Read an error response body and build a normalised error (message redacted)."""
    try:
        raw = await response.aread()
        body = json.loads(raw) if raw else None
    except (ValueError, httpx.HTTPError):
        body = None
    etype, message = _error_type(body)
    outcome = outcome_for_status(response.status_code)
    if outcome in (Outcome.BAD_REQUEST, Outcome.INTERNAL):
        outcome = vendor_outcome(etype, outcome)
    text = f"HTTP {response.status_code}" + (f" {etype}" if etype else "")
    if message:
        text += f": {message[:200]}"
    return ProviderCallError(
        redact(text),
        outcome=outcome,
        provider=provider,
        code=str(response.status_code),
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
    )


async def iter_sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Parse a text/event-stream into ``(event, data)`` pairs."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)


async def iter_openai_chunks(response: httpx.Response, provider: str) -> AsyncIterator[Any]:
    """The JSON chunks of an OpenAI-style stream (``data: {...}`` lines ended by
    ``data: [DONE]``), read to the end of the body so the connection is kept (F-105).

    An in-stream error chunk (``{"error": {...}}``, or vLLM's ``{"object": "error", ...}``)
    raises with the vendor's type; a stream that stops before ``[DONE]`` is ``disconnected``.
    """
    done = False
    async for _event, data in iter_sse(response.aiter_lines()):
        if done:
            continue
        if data.strip() == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if isinstance(chunk, dict) and ("error" in chunk or chunk.get("object") == "error"):
            err = chunk["error"] if isinstance(chunk.get("error"), dict) else chunk
            etype = err.get("type") or err.get("code")
            raise ProviderCallError(
                str(err.get("message", "stream error"))[:200],
                outcome=vendor_outcome(str(etype) if etype else None),
                provider=provider, code=str(etype or "stream_error"))
        yield chunk
    if not done:
        raise ProviderCallError("stream ended before [DONE]", outcome=Outcome.DISCONNECTED,
                                provider=provider, code="incomplete_stream")
