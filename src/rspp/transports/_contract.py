"""The transport contract: what every transport (loopback, WebSocket, telephony) provides.

A transport turns client media into session ingress events (the Event ABI:
``audio_chunk`` with ``AudioFormat``, ``sample_index`` and ``transport_seq``),
is the session's output sink, and owns playback: ``output_accepted`` (RK-22)
when the first output of a turn passes the egress gate, ``playback_started`` /
``playback_completed`` / ``playback_cancelled`` (RK-23) as it plays, stopping
at once when the turn driver fences a turn.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rspp.kernel import Event

__all__ = ["PlaybackObserver", "Transport"]


@runtime_checkable
class PlaybackObserver(Protocol):
    """The turn driver as seen by a transport."""

    @property
    def busy(self) -> bool: ...

    def playback_started(self, turn_id: str) -> None: ...

    def generation_complete(self, turn_id: str) -> None: ...

    def output_complete(self, turn_id: str) -> None: ...

    def playback_committed(self, turn_id: str, samples: int) -> None:
        """A cancelled turn's commit point: its first ``samples`` play, never retracted."""


@runtime_checkable
class Transport(Protocol):
    """One client connection of one session."""

    def output(self, port: str, event: Event) -> None:
        """The session output sink (called after the egress gate)."""

    def stop_playback(self, turn_id: str, reason: str = "barge_in") -> None:
        """Drop unplayed output of ``turn_id`` now (cancel fence); ``reason``: the cause."""

    async def run(self) -> None:
        """Stream the client's media into the session until it ends."""
