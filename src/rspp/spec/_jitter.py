"""Jitter-buffer profiles of the live transports (F-087): named presets and compilation.

A spec's ``transport.jitter`` (every transport) and ``transport.jitter_by_transport``
(one transport, over it) compile into one :class:`JitterProfile` per transport kind,
starting from a named preset (the field ``profile``, else the transport's default:
:data:`TRANSPORT_DEFAULTS`). ``rspp.transports`` runs the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from rspp.spec._issues import LintIssue
from rspp.spec._model import JitterSpec, TransportSpec
from rspp.spec._yaml import SourceMap

__all__ = ["BUFFERING_JITTER", "JITTER_PRESETS", "TRANSPORT_DEFAULTS", "JitterProfile",
           "JitterProfiles", "compile_jitter"]

Kind = Literal["websocket", "telephony", "webrtc", "livekit"]
KINDS: tuple[Kind, ...] = ("websocket", "telephony", "webrtc", "livekit")


@dataclass(frozen=True, slots=True)
class JitterProfile:
    """How one transport's ingress buffers, reorders and conceals (see JitterSpec)."""

    name: str
    mode: Literal["adaptive", "fixed"]
    target_ms: int
    min_ms: int
    max_ms: int
    reorder_window_frames: int
    loss: Literal["conceal", "drop"]
    conceal: Literal["silence", "repeat_fade"]
    conceal_max_frames: int


JITTER_PRESETS: dict[str, JitterProfile] = {
    # hold at most one frame behind a gap; short gaps become silence
    "low_latency": JitterProfile("low_latency", "fixed", 20, 20, 40, 2, "conceal", "silence",
                                 2),
    "balanced": JitterProfile("balanced", "adaptive", 60, 20, 120, 4, "conceal",
                              "repeat_fade", 3),
    # carrier networks: deeper, more reordering, longer concealment
    "robust": JitterProfile("robust", "adaptive", 100, 40, 240, 8, "conceal", "repeat_fade",
                            5),
    # transport.buffering: accuracy_first (F-054): wait long for a missing frame, reorder
    # across a second of audio; conceal only what never comes
    "accuracy": JitterProfile("accuracy", "adaptive", 1000, 200, 2000, 50, "conceal",
                              "repeat_fade", 10),
}
#: the profile every transport starts from under a spec's ``transport.buffering`` (F-054)
BUFFERING_JITTER: dict[str, str] = {"latency_first": "low_latency",
                                    "accuracy_first": "accuracy"}
#: the profile a transport uses when the spec names none
TRANSPORT_DEFAULTS: dict[Kind, str] = {"websocket": "balanced", "telephony": "robust",
                                       "webrtc": "low_latency", "livekit": "low_latency"}


@dataclass(frozen=True, slots=True)
class JitterProfiles:
    """The compiled profile of each transport kind."""

    websocket: JitterProfile = JITTER_PRESETS["balanced"]
    telephony: JitterProfile = JITTER_PRESETS["robust"]
    webrtc: JitterProfile = JITTER_PRESETS["low_latency"]
    livekit: JitterProfile = JITTER_PRESETS["low_latency"]

    def for_transport(self, kind: str) -> JitterProfile:
        """The profile of transport ``kind`` (``websocket`` for an unknown kind)."""
        return getattr(self, kind, self.websocket) if kind in KINDS else self.websocket


_OVERRIDES = tuple(f.name for f in fields(JitterProfile) if f.name != "name")


def _apply(base: JitterProfile, layer: JitterSpec | None) -> JitterProfile:
    if layer is None:
        return base
    changes = {k: getattr(layer, k) for k in _OVERRIDES if getattr(layer, k) is not None}
    return replace(base, **changes) if changes else base


def compile_jitter(t: TransportSpec | None, issues: list[LintIssue],
                   src: SourceMap) -> JitterProfiles:
    """The profiles of ``t`` (the defaults when absent); depth problems go to ``issues``."""
    if t is None:
        return JitterProfiles()
    out: dict[str, JitterProfile] = {}
    reported: set[str] = set()
    for kind in KINDS:
        own = t.jitter_by_transport.get(kind)
        name = (own.profile if own is not None and own.profile else None) or \
            (t.jitter.profile if t.jitter is not None and t.jitter.profile else None) or \
            (BUFFERING_JITTER[t.buffering] if t.buffering else None) or \
            TRANSPORT_DEFAULTS[kind]
        prof = _apply(_apply(JITTER_PRESETS[name], t.jitter), own)
        out[kind] = prof
        if prof.min_ms <= prof.target_ms <= prof.max_ms:
            continue
        layer, path = (own, ("transport", "jitter_by_transport", kind)) if own is not None \
            else (t.jitter, ("transport", "jitter"))
        wrong = "min_ms" if prof.min_ms > prof.target_ms else "max_ms"
        if layer is None or getattr(layer, wrong) is None:
            wrong = "target_ms"
        issue = src.issue((*path, wrong),
                          f"the {kind} jitter depth must satisfy min_ms <= target_ms <= "
                          f"max_ms (got {prof.min_ms} <= {prof.target_ms} <= {prof.max_ms})",
                          "raise max_ms or lower min_ms/target_ms so the target lies "
                          "between them")
        if issue.path not in reported:  # one line per offending field
            reported.add(issue.path)
            issues.append(issue)
    return JitterProfiles(**out)
