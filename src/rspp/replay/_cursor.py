"""ReplayCursor: a replay's position at an ingress-event boundary (F-152).

A cursor names the recording (path and a digest of its ingress events), the
replay modes, how many recorded ingress events were fed (``position``) and the
candidate session's state at that boundary (next ``runtime_sequence``, virtual
``runtime_ms``, candidate timeline lines so far). It is plain JSON, so a paused
replay can be persisted and resumed later, in another process:
:meth:`~rspp.replay.ReplayEngine.resume` re-executes the recording
deterministically up to ``position`` and refuses to continue unless the session
reached exactly the same boundary (same sequence, time and lines).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec

from rspp.contracts import ReplayMode
from rspp.replay._errors import ReplayError

__all__ = ["ReplayCursor", "recording_digest"]


class ReplayCursor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where a replay stands (see the module docstring)."""

    recording_ref: str
    recording_digest: str
    mode: ReplayMode
    decision_mode: ReplayMode
    position: int
    total: int
    runtime_sequence: int
    runtime_ms: int
    lines: int
    paused: bool = False

    @property
    def done(self) -> bool:
        return self.position >= self.total

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> ReplayCursor:
        try:
            return msgspec.json.decode(data, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ReplayError(f"invalid replay cursor: {exc}; save cursors with "
                              "ReplayCursor.save / to_json") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> ReplayCursor:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ReplayError(f"{path}: cannot read replay cursor: {exc.strerror}") from exc
        return cls.from_json(data)


def recording_digest(session_id: str, event_ids: list[str]) -> str:
    """A short identity of a recording's ingress stream (cursor/recording match check)."""
    h = hashlib.sha256(session_id.encode())
    for eid in event_ids:
        h.update(b"\x00" + eid.encode())
    return h.hexdigest()[:32]
