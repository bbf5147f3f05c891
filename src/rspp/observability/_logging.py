"""JSON structured logs with correlation ids on every line (F-067, NF-008).

:func:`log_context` binds ``session_id``, ``turn_id``, ``pipeline_version``,
``node_id`` and ``edge_id`` in context variables (so each asyncio task keeps
its own); :class:`JsonLogFormatter` writes one JSON object per record with all
five ids (``null`` when unbound; an ``extra={...}`` value wins), plus ``ts``,
``level``, ``logger``, ``message`` and any other extra fields. An optional
:class:`~rspp.observability.Redactor` scrubs PII from messages (NF-014 logs).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from rspp.observability._redaction import Redactor

__all__ = ["CORRELATION_FIELDS", "JsonLogFormatter", "current_log_context", "log_context"]

CORRELATION_FIELDS = ("session_id", "turn_id", "pipeline_version", "node_id", "edge_id")

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "rspp_log_context", default={}  # noqa: B039 - the default is never mutated
)
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_encoder = msgspec.json.Encoder()


def current_log_context() -> dict[str, str]:
    return dict(_context.get())


@contextmanager
def log_context(**ids: str | None) -> Iterator[None]:
    """Bind correlation ids for the current task until the block exits."""
    unknown = set(ids) - set(CORRELATION_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown log context field(s) {sorted(unknown)}; use {list(CORRELATION_FIELDS)}"
        )
    merged = {**_context.get(), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


class JsonLogFormatter(logging.Formatter):
    """One machine-parseable JSON object per log line."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if self._redactor is not None:
            message, _ = self._redactor.redact_text(message)
        bound = _context.get()
        out: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        for name in CORRELATION_FIELDS:
            out[name] = getattr(record, name, None) or bound.get(name)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                plain = isinstance(value, str | int | float | bool | None)
                out[key] = value if plain else repr(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if self._redactor is not None:  # secrets leave every field, not only the message
            scrubbed = self._redactor.scrub(out)
            out = scrubbed if isinstance(scrubbed, dict) else out
        return _encoder.encode(out).decode()
