"""VAD and turn-detector nodes (F-017) with explicit end of utterance (F-042).

``vad`` (inline) classifies every audio frame with the configured engine
(``energy`` default, ``webrtc``), runs an endpointing policy on media time and

* forwards each frame on ``audio`` with ``attrs`` ``speech``/``utterance``/``eou``
  so a downstream STT segments utterances in stream order;
* emits ``vad`` events (``{"state": "start"|"end", ...}``) at boundaries;
* tells the turn driver about speech start (barge-in) and end of utterance.

An in-band ``end_of_utterance`` event on the audio input (client push-to-talk)
ends the utterance at once, without waiting for silence (F-042).

``turn_detector`` (inline) turns ``vad`` boundaries into turn boundaries with a
policy of its own (``min_utterance_ms``); when present it, not the VAD, proposes turns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from rspp.contracts import SPEECH_END_AUDIT
from rspp.kernel import AudioFormat, Event, Node, NodeContext
from rspp.nodes._endpointing import (
    AdaptiveEndpointer,
    Endpointer,
    make_endpointer,
    transcript_complete,
)
from rspp.nodes._services import services_of

__all__ = ["EOU_KIND", "TurnDetectorNode", "VadNode"]

EOU_KIND = "end_of_utterance"
_WEBRTC_RATES = (8000, 16000, 32000, 48000)


def _level_dbfs(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    if samples.size == 0:
        return -120.0
    power = float(np.dot(samples, samples)) / samples.size  # one BLAS call per frame
    return -120.0 if power <= 0 else 10.0 * math.log10(power / (32768.0 * 32768.0))


class VadNode(Node):
    """Voice activity detection + endpointing; session scoped."""

    type_name = "vad"
    inputs = ("audio",)
    outputs = ("audio", "vad")
    scope = "session"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.engine = str(self.params.get("engine", "energy"))
        if self.engine not in ("energy", "webrtc", "webrtcvad"):
            raise ValueError(f"vad engine {self.engine!r} unknown; use 'energy' or 'webrtc'")
        self.threshold_db = float(self.params.get("threshold_db", -40.0))
        self.aggressiveness = int(self.params.get("aggressiveness", 2))
        self.endpointer: Endpointer = make_endpointer(self.params)
        if isinstance(self.endpointer, AdaptiveEndpointer):
            self.endpointer.is_complete = self._heard_complete
        self._webrtc: Any = None
        self.utterance = 0
        self.speech_ms = 0.0
        self.frames = 0
        self.speech_frames = 0
        self.utterance_start: int | None = None
        #: input sample just after the last voiced frame: where the user stopped speaking
        self.voiced_end: int | None = None

    def _is_speech(self, pcm: bytes, fmt: AudioFormat) -> bool:
        if self.engine != "energy" and fmt.sample_rate in _WEBRTC_RATES:
            n = len(pcm) // 2
            if n * 1000 in (fmt.sample_rate * 10, fmt.sample_rate * 20, fmt.sample_rate * 30):
                if self._webrtc is None:
                    import webrtcvad

                    self._webrtc = webrtcvad.Vad(self.aggressiveness)
                return bool(self._webrtc.is_speech(pcm, fmt.sample_rate))
        return _level_dbfs(pcm) > self.threshold_db

    def _heard_complete(self) -> bool:
        """The STT has decoded up to the silence and its transcript is a complete request."""
        live = services_of(self.ctx).live_transcript
        return (live.utterance == self.utterance and live.decoded_until >= (self.voiced_end or 0)
                and transcript_complete(live.text))

    def _boundary(self, state: str, ev: Event, reason: str) -> None:
        payload = {"state": state, "utterance": self.utterance, "sample_index": ev.sample_index,
                   "speech_ms": self.speech_ms, "reason": reason}
        self.ctx.emit(ev.derive("vad", payload, attrs={"vad": state}), "vad")
        if state == "end" and self.voiced_end is not None:
            # the anchor of "end of user speech" latencies (rspp.observability.turn_latencies)
            self.ctx.audit(f"{SPEECH_END_AUDIT}{self.voiced_end}")
        hooks = services_of(self.ctx).hooks
        if hooks is None:
            return
        if state == "start":
            hooks.speech_started(ev.sample_index)
        elif not services_of(self.ctx).turn_detector_present:
            hooks.end_of_utterance(reason)

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind == EOU_KIND:
            if self.endpointer.force_end():
                marker = event.derive("audio_chunk", b"", audio_format=event.audio_format,
                                      sample_index=event.sample_index)
                marker.attrs = {"speech": False, "utterance": self.utterance, "eou": True}
                self.ctx.emit(marker, "audio")
                self._boundary("end", event, "explicit_end_of_utterance")
            return None
        if event.kind != "audio_chunk" or not isinstance(event.payload, bytes | bytearray):
            return event
        fmt = event.audio_format or AudioFormat()
        frame_ms = fmt.duration_ms(len(event.payload))
        speech = self._is_speech(bytes(event.payload), fmt)
        if speech and event.sample_index is not None:
            self.voiced_end = event.sample_index + len(event.payload) // (2 * fmt.channels)
        self.frames += 1
        self.speech_frames += int(speech)
        boundary = self.endpointer.update(speech, frame_ms)
        if boundary == "start":
            self.utterance += 1
            self.speech_ms = 0.0
            self.utterance_start = event.sample_index
        if self.endpointer.in_speech or boundary == "end":
            self.speech_ms += frame_ms
        attrs = dict(event.attrs or {})
        attrs.update(speech=self.endpointer.in_speech or boundary == "end",
                     utterance=self.utterance, eou=boundary == "end")
        event.attrs = attrs
        self.ctx.emit(event, "audio")
        if boundary is not None:
            reason = "vad_speech" if boundary == "start" else "vad_silence"
            if boundary == "end" and isinstance(self.endpointer, AdaptiveEndpointer) \
                    and self.endpointer.ended_early:
                reason = "vad_silence_transcript_complete"
            self._boundary(boundary, event, reason)
        return None


class TurnDetectorNode(Node):
    """Turns VAD boundaries into turn boundaries; short blips never become turns."""

    type_name = "turn_detector"
    inputs = ("vad", "text")
    outputs = ("turn",)
    scope = "session"

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        self.min_utterance_ms = float(self.params.get("min_utterance_ms", 200))
        svc = services_of(ctx)
        if svc.hooks is not None:
            svc.turn_detector_present = True
        self.proposed = 0
        self.ignored = 0

    def process(self, event: Event, port: str) -> Event | None:
        if port != "vad" or not isinstance(event.payload, dict):
            return None
        if event.payload.get("state") != "end":
            return None
        explicit = event.payload.get("reason") == "explicit_end_of_utterance"
        if not explicit and float(event.payload.get("speech_ms", 0.0)) < self.min_utterance_ms:
            self.ignored += 1
            self.ctx.audit(f"turn_detector:ignored_short_utterance:{event.payload.get('speech_ms')}")
            return None
        self.proposed += 1
        hooks = services_of(self.ctx).hooks
        if hooks is not None:
            hooks.end_of_utterance(str(event.payload.get("reason", "turn_detector")))
        return event.derive("turn_end_detected", dict(event.payload))
