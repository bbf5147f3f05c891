"""Inline text nodes: sentence segmenter, PII redaction (F-118, NF-014), compliance.

All three pass end-of-stream markers (``attrs["eos"]``) through unchanged and
record every action as an audit event (counts and rule names, never the text).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rspp.kernel import Event, Node, NodeContext

__all__ = ["PII_PATTERNS", "ComplianceNode", "RedactionNode", "SentenceSegmenter"]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")

#: built-in PII rules (name -> regex), applied in this order (longest digit runs first)
PII_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "card": r"\b(?:\d[ -]?){13,19}\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    "phone": r"(?<!\w)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}\b",
}


def _is_eos(ev: Event) -> bool:
    return bool(ev.attrs and ev.attrs.get("eos"))


def _out(ev: Event, text: str, **attrs: Any) -> Event:
    out = ev.derive("text", text, final=True, attrs={**(ev.attrs or {}), **attrs})
    out.turn_id = ev.turn_id
    return out


class SentenceSegmenter(Node):
    """Aggregates streamed tokens into sentences for TTS (min ``min_chars`` each)."""

    type_name = "sentence_segmenter"
    inputs = ("text",)
    outputs = ("text",)
    scope = "turn"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.min_chars = int(self.params.get("min_chars", 8))
        self._buf: dict[str | None, str] = {}
        self.sentences = 0

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind != "text":
            return event
        tid = event.turn_id
        if _is_eos(event):
            rest = self._buf.pop(tid, "").strip()
            if rest:
                self.sentences += 1
                self.ctx.emit(_out(event, rest, eos=False, sentence=self.sentences), "text")
            return event
        buf = self._buf.get(tid, "") + str(event.payload or "")
        parts = _SENTENCE_END.split(buf)
        pending = ""
        for part in parts[:-1]:
            pending = f"{pending} {part}".strip() if pending else part.strip()
            if len(pending) >= self.min_chars:
                self.sentences += 1
                self.ctx.emit(_out(event, pending, token=False, sentence=self.sentences), "text")
                pending = ""
        tail = parts[-1]
        self._buf[tid] = f"{pending} {tail}" if pending else tail
        if event.final:
            # a complete (non-streamed) text: flush it as one sentence
            rest = self._buf.pop(tid, "").strip()
            if rest:
                self.sentences += 1
                return _out(event, rest, sentence=self.sentences)
        return None

    def on_cancel(self, turn_id: str | None, reason: str) -> None:
        self._buf.pop(turn_id, None)


class RedactionNode(Node):
    """Replaces PII (``patterns``: names of :data:`PII_PATTERNS` or ``custom`` regexes)."""

    type_name = "redaction"
    inputs = ("text",)
    outputs = ("text",)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        names = list(self.params.get("patterns", ["email", "phone", "card"]))
        unknown = [n for n in names if n not in PII_PATTERNS]
        if unknown:
            raise ValueError(
                f"redaction patterns {unknown} unknown; use {sorted(PII_PATTERNS)} or put "
                "regexes under params.custom"
            )
        rules = [(n, rx) for n, rx in PII_PATTERNS.items() if n in names]
        rules += list(dict(self.params.get("custom", {})).items())
        self.rules = [(str(n), re.compile(str(p))) for n, p in rules]
        self.replacement = str(self.params.get("replacement", "[redacted {name}]"))
        self.redactions: dict[str, int] = {}

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}
        for name, rx in self.rules:
            text, n = rx.subn(self.replacement.format(name=name), text)
            if n:
                counts[name] = n
        return text, counts

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind != "text" or not isinstance(event.payload, str) or _is_eos(event):
            return event
        text, counts = self.redact(event.payload)
        if not counts:
            return event
        for name, n in counts.items():
            self.redactions[name] = self.redactions.get(name, 0) + n
            self.ctx.audit(f"redaction:{name}:{n}")
        out = _out(event, text, redacted=sorted(counts))
        out.final = event.final
        return out


class ComplianceNode(Node):
    """Blocks (``action: block``, replaced by ``replacement``) or masks ``blocked_terms``."""

    type_name = "compliance"
    inputs = ("text",)
    outputs = ("text",)

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.terms = [str(t).lower() for t in self.params.get("blocked_terms", [])]
        self.action = str(self.params.get("action", "block"))
        if self.action not in ("block", "mask"):
            raise ValueError(f"compliance action {self.action!r} unknown; use 'block' or 'mask'")
        self.replacement = str(self.params.get("replacement", "I can not talk about that."))
        self._rx = [re.compile(re.escape(t), re.IGNORECASE) for t in self.terms]
        self.actions = 0

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind != "text" or not isinstance(event.payload, str) or _is_eos(event):
            return event
        hits = [t for t, rx in zip(self.terms, self._rx, strict=True) if rx.search(event.payload)]
        if not hits:
            return event
        self.actions += 1
        self.ctx.audit(f"compliance:{self.action}:{len(hits)}")
        if self.action == "block":
            return _out(event, self.replacement, compliance="blocked")
        text = event.payload
        for rx in self._rx:
            text = rx.sub(lambda m: "*" * len(m.group(0)), text)
        return _out(event, text, compliance="masked")
