"""Text revision guard per edge/output (F-024): monotonic partials, one immutable final.

Text events carry partial and final hypotheses of a *segment* (``attrs["segment"]``,
or the ``segment_id`` of a :class:`rspp.contracts.TextPayload` body) with a
``revision`` that must grow inside the segment; a segment ends with exactly one
final, which is immutable afterwards. :class:`TextStreamGuard` keeps one
:class:`rspp.contracts.TextRevisionTracker` per (stream key, segment) - the
stream key is the output port or edge id the events travel on - and refuses an
out-of-order partial, a second final or any edit after the final. Each refusal
is dropped from the stream and recorded as a schema-valid TelemetryLane record
(``kind="text_guard"``, ``reason="text_guard:<rule>:..."``) plus a
:class:`TextRefusal` kept in :attr:`TextStreamGuard.refusals`.

Modes: ``"segmented"`` (default) checks only events that name a segment, so
streams without segment identity pass unchanged; ``"strict"`` also checks
unsegmented text, treating it as one implicit segment per stream that a final
closes (the next event opens the next implicit segment); ``"off"`` disables it.
Only ``text`` events reach the guard: audio never pays for it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from rspp.contracts import EventRecord, TextPayload, TextRevisionTracker
from rspp.errors import ContractError
from rspp.kernel._events import EventKind

if TYPE_CHECKING:
    from rspp.kernel._events import Event
    from rspp.kernel._signals import SignalLog

__all__ = ["TEXT_GUARD_MODES", "TextGuardMode", "TextRefusal", "TextStreamGuard", "text_view"]

TextGuardMode = Literal["off", "segmented", "strict"]
TEXT_GUARD_MODES: Final[tuple[str, ...]] = ("off", "segmented", "strict")

#: Rules a refused text event breaks.
EDIT_AFTER_FINAL: Final = "edit_after_final"
NON_MONOTONIC: Final = "non_monotonic"


@dataclass(frozen=True, slots=True)
class TextRefusal:
    """One refused text event: where, which segment and revision, which rule, the record."""

    stream: str
    segment_id: str
    revision: int
    final: bool
    rule: str
    message: str
    record: EventRecord | None


def text_view(ev: Event) -> tuple[str | None, str, bool, int]:
    """``(segment_id or None, text, is_final, revision)`` of a text event."""
    body = ev.payload
    if isinstance(body, TextPayload):
        return body.segment_id, body.text, body.is_final, body.revision
    seg = None
    if ev.attrs:
        raw = ev.attrs.get("segment")
        if raw is None:
            raw = ev.attrs.get("segment_id")
        if raw is not None:
            seg = str(raw)
    return seg, "" if body is None else str(body), bool(ev.final), int(ev.revision)


class TextStreamGuard:
    """Per-stream text revision enforcement built on :class:`TextRevisionTracker`.

    ``admit(stream, ev)`` returns ``True`` when ``ev`` may continue and ``False``
    when it was refused (and recorded). Memory is bounded: at most
    ``max_segments`` segments are tracked across streams (oldest forgotten first).
    """

    __slots__ = ("_implicit", "_segments", "admitted", "max_segments", "mode", "refusals",
                 "signals")

    def __init__(
        self,
        signals: SignalLog | None = None,
        *,
        mode: TextGuardMode = "segmented",
        max_segments: int = 4096,
        max_refusals: int = 256,
    ) -> None:
        if mode not in TEXT_GUARD_MODES:
            raise ValueError(
                f"text_guard mode {mode!r} is not one of {list(TEXT_GUARD_MODES)}; "
                "use 'segmented' (default), 'strict' or 'off'"
            )
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        self.signals = signals
        self.mode: TextGuardMode = mode
        self.max_segments = max_segments
        self._segments: OrderedDict[tuple[str, str], TextRevisionTracker] = OrderedDict()
        self._implicit: dict[str, int] = {}
        self.refusals: deque[TextRefusal] = deque(maxlen=max_refusals)
        self.admitted = 0

    def _tracker(self, key: tuple[str, str]) -> TextRevisionTracker:
        tr = self._segments.get(key)
        if tr is None:
            tr = self._segments[key] = TextRevisionTracker()
            if len(self._segments) > self.max_segments:
                self._segments.popitem(last=False)
        return tr

    def admit(self, stream: str, ev: Event) -> bool:
        """Check one event on ``stream``; non-text events always pass."""
        if self.mode == "off" or ev.kind != EventKind.TEXT:
            return True
        named, text, is_final, revision = text_view(ev)
        implicit = named is None
        if named is None:
            if self.mode != "strict":
                return True
            seg = f"~{self._implicit.get(stream, 0)}"
        else:
            seg = named
        tracker = self._tracker((stream, seg))
        try:
            tracker.accept(TextPayload(text=text, is_final=is_final, revision=revision,
                                       segment_id=seg))
        except ContractError as exc:
            self._refuse(stream, seg, ev, is_final, revision, tracker, str(exc))
            return False
        if implicit and is_final:
            self._implicit[stream] = self._implicit.get(stream, 0) + 1
        self.admitted += 1
        return True

    def _refuse(self, stream: str, seg: str, ev: Event, is_final: bool, revision: int,
                tracker: TextRevisionTracker, message: str) -> None:
        rule = EDIT_AFTER_FINAL if tracker.is_final(seg) else NON_MONOTONIC
        rec = None
        if self.signals is not None:
            rec = self.signals.telemetry(
                kind="text_guard", turn_id=ev.turn_id, node_id=ev.node_id, edge_id=stream,
                reason=f"text_guard:{rule}:segment={seg}:revision={revision}"
                       f":final={str(is_final).lower()}",
            )
        self.refusals.append(TextRefusal(stream=stream, segment_id=seg, revision=revision,
                                         final=is_final, rule=rule, message=message,
                                         record=rec))

    def is_final(self, stream: str, segment_id: str) -> bool:
        """True once ``segment_id`` on ``stream`` has its (immutable) final."""
        tr = self._segments.get((stream, segment_id))
        return tr is not None and tr.is_final(segment_id)
