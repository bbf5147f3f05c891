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

import base64
import re
from collections import Counter
from collections.abc import Mapping
from typing import Protocol

import msgspec

__all__ = [
    "DEFAULT_PII_RULES",
    "RedactionAudit",
    "RedactionConfig",
    "RedactionRule",
    "Redactor",
    "SecretValues",
    "parse_rule",
]


#: payload keys that carry audio (raw bytes, or base64 in recorded provider outputs)
_AUDIO_KEYS = frozenset({"data", "bytes_b64"})


class SecretValues(Protocol):
    """The registry of secret values to scrub (``rspp.providers.Redactor`` satisfies it)."""

    def redact(self, text: str) -> str: ...

    def contains_secret(self, text: str) -> bool: ...


class RedactionRule(msgspec.Struct, frozen=True, kw_only=True):
    """A named regular expression whose matches are removed from text payloads."""

    name: str
    pattern: str


def parse_rule(text: str, option: str = "--redact") -> RedactionRule:
    """``NAME=REGEX`` to a rule; a bad one raises ValueError naming ``option``."""
    name, sep, pattern = text.partition("=")
    if not sep or not name.strip() or not pattern:
        raise ValueError(f"{option} {text!r}: use NAME=REGEX, e.g. order_id=ORD-[0-9]+")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{option} {text!r}: the regular expression is invalid ({exc})"
                         ) from None
    return RedactionRule(name=name.strip(), pattern=pattern)


DEFAULT_PII_RULES: tuple[RedactionRule, ...] = (
    RedactionRule(name="email", pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    RedactionRule(name="card_number", pattern=r"\b(?:\d[ -]?){13,16}\b"),
    RedactionRule(name="us_ssn", pattern=r"\b\d{3}-\d{2}-\d{4}\b"),
    RedactionRule(name="phone", pattern=r"\+?\d[\d ()-]{7,}\d"),
)


class RedactionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What a session's recordings and logs redact (``rspp run --redact/--redact-audio``).

    The built-in PII rules always apply; ``rules`` add named patterns; ``mask_audio``
    zeroes audio payloads in the recording (same length: timing and sizes unchanged).
    ``audit_path``: every redaction action (record, rules) and the counts per rule are
    written there as JSON lines when the session ends.
    """

    rules: tuple[RedactionRule, ...] = ()
    mask_audio: bool = False
    audit_path: str | None = None

    def redactor(self, secrets: SecretValues | None = None) -> Redactor:
        return Redactor((*DEFAULT_PII_RULES, *self.rules), mask_audio=self.mask_audio,
                        secrets=secrets)


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
        """``text`` with every rule applied, and the names of the rules that matched.

        Secret values go first: a rule matching inside a secret (the phone rule on a run
        of digits in an API key) would otherwise cut it into pieces that no longer match
        the secret, and leave the rest of it in the text.
        """
        hits: list[str] = []
        secrets = self._secrets
        if secrets is not None and secrets.contains_secret(text):
            text = secrets.redact(text)
            hits.append("secret")
            self.counts["secret"] += 1
        for name, regex in self._rules:
            text, n = regex.subn(f"[REDACTED:{name}]", text)
            if n:
                hits.append(name)
                self.counts[name] += n
        return text, hits

    def redact_payload(
        self, payload: Mapping[str, object], *, session_id: str, event_id: str
    ) -> dict[str, object]:
        """A redacted copy of ``payload``: every string in it, at any depth (text,
        transcripts, the attributes and provider outputs an L2 recording keeps), and, if
        enabled, audio (``data`` bytes, ``bytes_b64`` strings) zeroed at the same length."""
        hits: list[str] = []
        out = self._walk(payload, hits)
        if hits and len(self.audit) < self._audit_limit:
            self.audit.append(
                RedactionAudit(session_id=session_id, event_id=event_id,
                               rules=tuple(dict.fromkeys(hits)))
            )
        return out if isinstance(out, dict) else dict(payload)

    def _walk(self, value: object, hits: list[str], key: str = "") -> object:
        if key in _AUDIO_KEYS:
            if not self._mask_audio:
                return value
            if isinstance(value, bytes | bytearray | memoryview):
                masked: object = bytes(len(value))
            elif isinstance(value, str):
                try:
                    masked = base64.b64encode(bytes(len(base64.b64decode(value)))).decode()
                except ValueError:
                    return value
            else:
                return value
            hits.append("audio_mask")
            self.counts["audio_mask"] += 1
            return masked
        if isinstance(value, str):
            text, found = self.redact_text(value)
            hits.extend(found)
            return text
        if isinstance(value, Mapping):
            return {k: self._walk(v, hits, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, hits) for v in value]
        return value

    def audit_lines(self) -> list[bytes]:
        """The audit trail as JSON lines: one per action, then the counts per rule."""
        enc = msgspec.json.Encoder()
        out = [enc.encode({"kind": "redaction", **msgspec.structs.asdict(a)})
               for a in self.audit]
        out.append(enc.encode({"kind": "redaction_counts", "counts": dict(self.counts),
                               "actions": len(self.audit)}))
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
