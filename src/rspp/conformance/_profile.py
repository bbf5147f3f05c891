"""Conformance profiles: named sets of contract categories an adapter must pass (F-164).

A profile manifest (JSON) names its target kind and lists contract categories, each
mandatory or optional with what it checks::

    {"profile": "rspp.conformance/v1", "name": "external-node", "version": "1",
     "target": "external_node",
     "categories": [{"name": "handshake", "mandatory": true, "checks": "..."}, ...]}

The built-in profiles (:data:`PROFILES`) are the project's own; ``rspp conformance
profiles --json`` prints them and ``--profile FILE`` takes any other manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import msgspec

from rspp.errors import RSPPError

__all__ = [
    "PROFILES",
    "PROFILE_FORMAT",
    "Category",
    "ConformanceError",
    "Profile",
    "Target",
    "load_profile",
]

PROFILE_FORMAT = "rspp.conformance/v1"
Target = Literal["transport", "provider", "external_node"]


class ConformanceError(RSPPError):
    """A conformance profile or result file is invalid (the message names the field)."""


class Category(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One contract category of a profile."""

    name: str
    mandatory: bool = True
    checks: str = ""


class Profile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A conformance profile manifest."""

    profile: Literal["rspp.conformance/v1"] = "rspp.conformance/v1"
    name: str
    version: str = "1"
    target: Target
    categories: tuple[Category, ...]

    @property
    def ref(self) -> str:
        return f"{self.name}/v{self.version}"

    def mandatory(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories if c.mandatory)


def _profile(name: str, target: Target, *cats: tuple[str, bool, str]) -> Profile:
    return Profile(name=name, target=target, categories=tuple(
        Category(name=n, mandatory=m, checks=c) for n, m, c in cats))


PROFILES: dict[str, Profile] = {p.name: p for p in (
    _profile(
        "external-node", "external_node",
        ("handshake", True, "the program started by the manifest's command answers `init` "
         "with `ready` at protocol 1 within start_timeout_ms; stdout carries only frames"),
        ("call", True, "an event on the first input port ends with exactly one `done` "
         "within call_timeout_ms; every `emit` names the call and a declared output port"),
        ("concurrent_calls", True, "two calls in flight at once each end with their own "
         "`done`"),
        ("cancel", True, "a `cancel` of a call in flight is answered (`done`) within "
         "cancel_grace_ms and the program takes the next call"),
        ("stop", True, "`stop` and a closed stdin end the process within 5 s, exit 0"),
    ),
    _profile(
        "transport", "transport",
        ("auth", True, "a session with an invalid token is refused before `ready` (deny "
         "by default)"),
        ("handshake", True, "`ready` names the session, the protocol version and the "
         "negotiated rates"),
        ("ingress_audio", True, "streamed speech reaches the pipeline: a final transcript "
         "comes back"),
        ("egress_audio", True, "the reply is PCM16 audio followed by the turn's `commit` "
         "and `close`"),
        ("cancel", True, "an interrupt while the reply plays ends the turn `abort` and no "
         "reply audio follows it"),
        ("malformed_input", True, "a message the protocol does not know gets an error "
         "naming the field (or a 4xxx close), never a crash"),
    ),
    _profile(
        "provider", "provider",
        ("capabilities", True, "the adapter declares its kind and streaming (STT: 16 kHz "
         "input; TTS: incremental text input)"),
        ("streaming", True, "output streams in pieces: LLM deltas, STT interim then final "
         "transcripts, TTS PCM16 chunks at a declared rate"),
        ("cancel", True, "a cancel at the first output ends the stream there with outcome "
         "cancelled"),
        ("error_normalisation", True, "a call whose deadline is spent (timeout_ms 0; STT: "
         "once its input ended) ends as ProviderCallError with outcome timeout, retryable"),
        ("metrics", True, "every invocation is recorded with provider, kind and outcome "
         "labels and its latency; a successful one with time to first output and bytes"),
    ),
)}


def load_profile(ref: str | Path) -> Profile:
    """A built-in profile by name, or a manifest file; ConformanceError names the field."""
    text = str(ref)
    if text in PROFILES:
        return PROFILES[text]
    path = Path(text)
    if not path.is_file():
        raise ConformanceError(f"--profile {text!r}: neither a built-in profile "
                               f"({', '.join(PROFILES)}) nor a file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConformanceError(f"--profile {text}: not JSON: {exc}") from None
    try:
        prof = msgspec.convert(raw, Profile)
    except msgspec.ValidationError as exc:
        raise ConformanceError(f"--profile {text}: {exc}") from None
    names = [c.name for c in prof.categories]
    if len(set(names)) != len(names):
        raise ConformanceError(f"--profile {text}: `categories` names a category twice")
    return prof
