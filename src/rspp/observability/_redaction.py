"""Redaction of sensitive text and audio in recordings (F-073, NF-014).

A :class:`Redactor` rewrites a payload (as builtins) before it is exported:
text matching a rule is replaced by ``[REDACTED:<rule>]``; audio ``data`` bytes
are masked (zeroed, same length so timing and sizes are unchanged). Envelopes
(ordering, timestamps, ids) are never touched. Every action is counted per rule
and kept in an audit trail.

Secrets are different: with ``secrets`` (the process secret registry, e.g.
``rspp.providers.default_redactor()``, which knows the value of every resolved
``env://``/``file://`` reference) :meth:`Redactor.scrub` removes those values
from *every* string of a line - record, payload, attributes, keys - wherever a
provider echoed them (error bodies, streamed text, attributes).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

import msgspec

__all__ = ["DEFAULT_PII_RULES", "RedactionAudit", "RedactionRule", "Redactor", "SecretValues"]


class SecretValues(Protocol):
    """The registry of secret values to scrub (``rspp.providers.Redactor`` satisfies it)."""

    def redact(self, text: str) -> str: ...

    def contains_secret(self, text: str) -> bool: ...


class RedactionRule(msgspec.Struct, frozen=True, kw_only=True):
    """A named regular expression whose matches are removed from text payloads."""

    name: str
    pattern: str


DEFAULT_PII_RULES: tuple[RedactionRule, ...] = (
    RedactionRule(name="email", pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    RedactionRule(name="card_number", pattern=r"\b(?:\d[ -]?){13,16}\b"),
    RedactionRule(name="us_ssn", pattern=r"\b\d{3}-\d{2}-\d{4}\b"),
    RedactionRule(name="phone", pattern=r"\+?\d[\d ()-]{7,}\d"),
)


class RedactionAudit(msgspec.Struct, frozen=True, kw_only=True):
    """One redaction action: which record, which rules (or ``audio_mask``)."""

    session_id: str
    event_id: str
    rules: tuple[str, ...]


class Redactor:
    """Applies text rules and optional audio masking to payload builtins."""

    def __init__(
        self,
        rules: tuple[RedactionRule, ...] = DEFAULT_PII_RULES,
        *,
        mask_audio: bool = False,
        audit_limit: int = 10_000,
        secrets: SecretValues | None = None,
    ) -> None:
        self._rules = tuple((rule.name, re.compile(rule.pattern)) for rule in rules)
        self._secrets = secrets
        self._mask_audio = mask_audio
        self._audit_limit = audit_limit
        self.counts: Counter[str] = Counter()
        self.audit: list[RedactionAudit] = []

    def redact_text(self, text: str) -> tuple[str, list[str]]:
        """``text`` with every rule applied, and the names of the rules that matched."""
        hits: list[str] = []
        for name, regex in self._rules:
            text, n = regex.subn(f"[REDACTED:{name}]", text)
            if n:
                hits.append(name)
                self.counts[name] += n
        return text, hits

    def redact_payload(
        self, payload: Mapping[str, object], *, session_id: str, event_id: str
    ) -> dict[str, object]:
        """A redacted copy of ``payload`` (``text`` fields and, if enabled, audio ``data``)."""
        out = dict(payload)
        hits: list[str] = []
        for key in ("text", "transcript"):
            value = out.get(key)
            if isinstance(value, str):
                out[key], found = self.redact_text(value)
                hits.extend(found)
        data = out.get("data")
        if self._mask_audio and isinstance(data, bytes | bytearray | memoryview):
            out["data"] = bytes(len(data))
            hits.append("audio_mask")
            self.counts["audio_mask"] += 1
        if hits and len(self.audit) < self._audit_limit:
            self.audit.append(
                RedactionAudit(session_id=session_id, event_id=event_id, rules=tuple(hits))
            )
        return out

    def scrub(self, value: object) -> object:
        """``value`` with every secret value removed from every string in it (recursively).

        Mappings, lists and tuples are rebuilt only where a secret was found; bytes
        (audio) are left alone. Without ``secrets`` this returns ``value`` itself.
        """
        secrets = self._secrets
        if secrets is None:
            return value
        return _scrub(value, secrets, self.counts)


def _scrub(value: object, secrets: SecretValues, counts: Counter[str]) -> object:
    """Scrubbed ``value``; containers are copied only when something inside changed."""
    if isinstance(value, str):
        if secrets.contains_secret(value):
            counts["secret"] += 1
            return secrets.redact(value)
        return value
    if isinstance(value, Mapping):
        pairs = [(_scrub(k, secrets, counts), _scrub(v, secrets, counts), k, v)
                 for k, v in value.items()]
        if all(nk is k and nv is v for nk, nv, k, v in pairs):
            return value
        return {nk: nv for nk, nv, _, _ in pairs}
    if isinstance(value, list | tuple):
        items = [_scrub(v, secrets, counts) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value
