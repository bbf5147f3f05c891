"""Endpointing policies: when does speech activity become an end of utterance (F-017).

A policy sees one VAD decision per frame (media time, never wall time) and says
``"start"``, ``"end"`` or ``None``. Policies are registered by name so a spec
(or a tenant policy) switches them with a parameter, downstream nodes unchanged.

``adaptive`` ends the turn early when the recogniser and the VAD agree: after
``complete_silence_ms`` of silence, if the transcript of everything up to the
silence is a complete request (:func:`transcript_complete`), the turn ends;
otherwise it waits the full ``silence_ms``, so a pause inside an unfinished
sentence ("what is ... four times six") does not split the turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

__all__ = [
    "ENDPOINTING_POLICIES",
    "AdaptiveEndpointer",
    "Endpointer",
    "HangoverEndpointer",
    "SilenceEndpointer",
    "make_endpointer",
    "transcript_complete",
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


#: a request ending in one of these words is unfinished ("what is", "tell me a")
_CONTINUES = frozenset(
    "a an the and or but so to of for in on at by with from is are was were be am "
    "what what's how who where when which why me my your our their this "
    "tell give show can could would will does did i".split())


def transcript_complete(text: str) -> bool:
    """True when ``text`` is a request the assistant recognises and it does not end
    in a word that announces more ("the", "is", "me", ...)."""
    from rspp.providers.offline import detect_intent

    words = text.lower().split()
    if not words or words[-1] in _CONTINUES:
        return False
    return detect_intent(text) is not None


class AdaptiveEndpointer(SilenceEndpointer):
    """Silence endpointing that ends early once the transcript is a complete request.

    ``is_complete`` is asked (only during silence, from ``complete_silence_ms`` on)
    whether the recogniser has heard everything up to the silence and found a
    complete request; the owner (the VAD node) wires it to the STT's live transcript.
    """

    def __init__(self, *, silence_ms: float = 600, complete_silence_ms: float = 250,
                 min_speech_ms: float = 60) -> None:
        super().__init__(silence_ms=silence_ms, min_speech_ms=min_speech_ms)
        if not 0 < complete_silence_ms <= silence_ms:
            raise ValueError(
                f"complete_silence_ms={complete_silence_ms}: must be > 0 and <= silence_ms"
                f" ({silence_ms})")
        self.complete_silence_ms = float(complete_silence_ms)
        self.is_complete: Callable[[], bool] | None = None
        self.early_ends = 0
        #: the last "end" came from a complete transcript, not from the full silence
        self.ended_early = False

    def update(self, speech: bool, frame_ms: float) -> Boundary:
        out = super().update(speech, frame_ms)
        if out == "end":
            self.ended_early = False
        elif (out is None and self.in_speech and self._silent >= self.complete_silence_ms
                and self.is_complete is not None and self.is_complete()):
            self.in_speech = False
            self._voiced = 0.0
            self.early_ends += 1
            self.ended_early = True
            return "end"
        return out


def _silence(p: Mapping[str, Any]) -> Endpointer:
    return SilenceEndpointer(silence_ms=float(p.get("silence_ms", 500)),
                             min_speech_ms=float(p.get("min_speech_ms", 60)))


def _hangover(p: Mapping[str, Any]) -> Endpointer:
    return HangoverEndpointer(silence_ms=float(p.get("silence_ms", 300)),
                              per_second_ms=float(p.get("per_second_ms", 150)),
                              max_silence_ms=float(p.get("max_silence_ms", 900)),
                              min_speech_ms=float(p.get("min_speech_ms", 60)))


def _adaptive(p: Mapping[str, Any]) -> Endpointer:
    return AdaptiveEndpointer(silence_ms=float(p.get("silence_ms", 600)),
                              complete_silence_ms=float(p.get("complete_silence_ms", 250)),
                              min_speech_ms=float(p.get("min_speech_ms", 60)))


#: policy name -> factory(params)
ENDPOINTING_POLICIES: dict[str, Callable[[Mapping[str, Any]], Endpointer]] = {
    "silence": _silence,
    "hangover": _hangover,
    "adaptive": _adaptive,
}


def make_endpointer(params: Mapping[str, Any]) -> Endpointer:
    name = str(params.get("endpointing", params.get("policy", "silence")))
    factory = ENDPOINTING_POLICIES.get(name)
    if factory is None:
        raise ValueError(
            f"endpointing policy {name!r} unknown; use one of {sorted(ENDPOINTING_POLICIES)}"
        )
    return factory(params)
