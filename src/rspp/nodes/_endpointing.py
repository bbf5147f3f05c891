"""Endpointing policies: when does speech activity become an end of utterance (F-017).

A policy sees one VAD decision per frame (media time, never wall time) and says
``"start"``, ``"end"`` or ``None``. Policies are registered by name so a spec
(or a tenant policy) switches them with a parameter, downstream nodes unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

__all__ = [
    "ENDPOINTING_POLICIES",
    "Endpointer",
    "HangoverEndpointer",
    "SilenceEndpointer",
    "make_endpointer",
]

Boundary = Literal["start", "end"] | None


class Endpointer(Protocol):
    in_speech: bool

    def update(self, speech: bool, frame_ms: float) -> Boundary: ...

    def force_end(self) -> bool: ...


class SilenceEndpointer:
    """Speech starts after ``min_speech_ms`` of voiced frames and ends after ``silence_ms``."""

    def __init__(self, *, silence_ms: float = 500, min_speech_ms: float = 60) -> None:
        if silence_ms <= 0 or min_speech_ms < 0:
            raise ValueError(
                f"silence_ms={silence_ms}, min_speech_ms={min_speech_ms}: silence_ms must be > 0"
                " and min_speech_ms >= 0"
            )
        self.silence_ms = float(silence_ms)
        self.min_speech_ms = float(min_speech_ms)
        self.in_speech = False
        self._voiced = 0.0
        self._silent = 0.0

    def update(self, speech: bool, frame_ms: float) -> Boundary:
        if not self.in_speech:
            self._voiced = self._voiced + frame_ms if speech else 0.0
            if self._voiced >= max(self.min_speech_ms, frame_ms):
                self.in_speech = True
                self._silent = 0.0
                return "start"
            return None
        self._silent = 0.0 if speech else self._silent + frame_ms
        if self._silent >= self.silence_ms:
            self.in_speech = False
            self._voiced = 0.0
            return "end"
        return None

    def force_end(self) -> bool:
        """Explicit end of utterance (F-042): end now if speech is in progress."""
        was = self.in_speech
        self.in_speech = False
        self._voiced = self._silent = 0.0
        return was


class HangoverEndpointer(SilenceEndpointer):
    """Like silence endpointing, but the silence window grows with the utterance length.

    ``silence_ms`` applies to short utterances; every second of speech adds
    ``per_second_ms`` up to ``max_silence_ms`` (long sentences get more time to pause).
    """

    def __init__(self, *, silence_ms: float = 300, per_second_ms: float = 150,
                 max_silence_ms: float = 900, min_speech_ms: float = 60) -> None:
        super().__init__(silence_ms=silence_ms, min_speech_ms=min_speech_ms)
        self.base_ms = float(silence_ms)
        self.per_second_ms = float(per_second_ms)
        self.max_silence_ms = float(max_silence_ms)
        self._speech_ms = 0.0

    def update(self, speech: bool, frame_ms: float) -> Boundary:
        if self.in_speech:
            self._speech_ms += frame_ms
            extra = self.per_second_ms * self._speech_ms / 1000.0
            self.silence_ms = min(self.base_ms + extra, self.max_silence_ms)
        out = super().update(speech, frame_ms)
        if out is not None:
            self._speech_ms = 0.0
            self.silence_ms = self.base_ms
        return out


def _silence(p: Mapping[str, Any]) -> Endpointer:
    return SilenceEndpointer(silence_ms=float(p.get("silence_ms", 500)),
                             min_speech_ms=float(p.get("min_speech_ms", 60)))


def _hangover(p: Mapping[str, Any]) -> Endpointer:
    return HangoverEndpointer(silence_ms=float(p.get("silence_ms", 300)),
                              per_second_ms=float(p.get("per_second_ms", 150)),
                              max_silence_ms=float(p.get("max_silence_ms", 900)),
                              min_speech_ms=float(p.get("min_speech_ms", 60)))


#: policy name -> factory(params)
ENDPOINTING_POLICIES: dict[str, Callable[[Mapping[str, Any]], Endpointer]] = {
    "silence": _silence,
    "hangover": _hangover,
}


def make_endpointer(params: Mapping[str, Any]) -> Endpointer:
    name = str(params.get("endpointing", params.get("policy", "silence")))
    factory = ENDPOINTING_POLICIES.get(name)
    if factory is None:
        raise ValueError(
            f"endpointing policy {name!r} unknown; use one of {sorted(ENDPOINTING_POLICIES)}"
        )
    return factory(params)
