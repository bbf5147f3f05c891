"""Per-pipeline recording sampling (F-071) and on-demand debug capture (F-076).

Sampling is deterministic: a session is recorded when the first 8 bytes of
SHA-256(session_id) mapped to [0, 1) fall below the pipeline's rate, so a replay
of the same session makes the same choice. OR-02 evidence of unsampled sessions
is still recorded (invariant 6 and gate 5 need it for every accepted turn).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from rspp.kernel._handles import Clock

__all__ = ["DebugCapture", "DebugCaptureSlots", "SamplingPolicy"]


class SamplingPolicy:
    """Recording rate per pipeline name (``pipeline_version`` prefix before ``@``)."""

    def __init__(self, default_rate: float = 1.0, per_pipeline: Mapping[str, float] | None = None):
        rates = {"<default>": default_rate, **(per_pipeline or {})}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"sampling rate for {name!r} is {rate!r}; use a number between 0.0 and 1.0"
                )
        self._default = default_rate
        self._rates = dict(per_pipeline or {})
        self._decided: dict[str, bool] = {}

    def rate_for(self, pipeline_version: str) -> float:
        name = pipeline_version.split("@", 1)[0]
        return self._rates.get(pipeline_version, self._rates.get(name, self._default))

    def sampled(self, session_id: str, pipeline_version: str) -> bool:
        """Whether the session is recorded (decided once per session, then cached)."""
        decided = self._decided.get(session_id)
        if decided is None:
            digest = hashlib.sha256(session_id.encode()).digest()
            position = int.from_bytes(digest[:8], "big") / 2**64
            decided = position < self.rate_for(pipeline_version)
            self._decided[session_id] = decided
        return decided

    def forget(self, session_id: str) -> None:
        self._decided.pop(session_id, None)


class DebugCapture:
    """Sessions with debug capture enabled, each until a clock deadline."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until_ns: dict[str, int] = {}

    def enable(self, session_id: str, duration_s: float) -> None:
        if duration_s <= 0:
            raise ValueError(f"debug capture duration_s={duration_s!r}; use a positive duration")
        self._until_ns[session_id] = self._clock.monotonic_ns() + int(duration_s * 1e9)

    def disable(self, session_id: str) -> None:
        self._until_ns.pop(session_id, None)

    def active(self, session_id: str) -> bool:
        """O(1) check; an expired capture is removed on first look."""
        until = self._until_ns.get(session_id)
        if until is None:
            return False
        if self._clock.monotonic_ns() >= until:
            del self._until_ns[session_id]
            return False
        return True

    @property
    def sessions(self) -> frozenset[str]:
        return frozenset(self._until_ns)


class DebugCaptureSlots:
    """The debug captures one runtime allows at once (F-076): at most ``limit`` sessions.

    What one capture costs the runtime's other sessions is measured by
    ``benchmarks/debug_capture.py``; bounding how many sessions capture at once bounds that
    cost (``rspp serve --max-debug-captures``). A slot is held until its capture's
    deadline, until it is ended (``seconds`` 0) or until its session ends.
    """

    def __init__(self, limit: int, clock: Clock) -> None:
        if limit < 0:
            raise ValueError(f"debug capture limit {limit!r}; use 0 (captures off) or more")
        self.limit = limit
        self._clock = clock
        self._until_ns: dict[str, int] = {}
        #: captures refused because every slot was held
        self.refused = 0

    def claim(self, session_id: str, duration_s: float) -> bool:
        """Hold a slot for ``session_id`` for ``duration_s`` (a session that holds one
        renews it); False when every slot is held by other sessions."""
        now = self._clock.monotonic_ns()
        held = self._until_ns
        for sid in [sid for sid, until in held.items() if until <= now]:
            del held[sid]
        if session_id not in held and len(held) >= self.limit:
            self.refused += 1
            return False
        held[session_id] = now + int(duration_s * 1e9)
        return True

    def release(self, session_id: str) -> None:
        self._until_ns.pop(session_id, None)

    @property
    def active(self) -> int:
        now = self._clock.monotonic_ns()
        return sum(1 for until in self._until_ns.values() if until > now)
