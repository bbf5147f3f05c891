"""The settings of a live transport (pacing, queues, floods, stalls, marks, commit point)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LiveOptions"]


@dataclass(frozen=True, slots=True)
class LiveOptions:
    frame_ms: int = 20
    #: queued reply audio per connection (frames); a slow client loses the oldest
    send_queue_frames: int = 50
    #: queued events per connection; beyond it the client is too slow: close
    send_queue_events: int = 512
    #: frames may leave this early (the client's jitter buffer absorbs it)
    egress_lead_ms: float = 10.0
    #: a reply starved of audio for up to this long keeps its pacing schedule (the late
    #: frames then leave at once); a longer gap starts a new schedule
    egress_catchup_ms: float = 200.0
    #: ingress may run ahead of real time by this much before it is a flood
    flood_allowance_ms: float = 2000.0
    #: ingress this far behind real time counts as late
    late_after_ms: float = 200.0
    #: a disconnected client stalls the session after this long (the active turn aborts)
    stall_timeout_s: float = 2.0
    #: a reconnect with a valid token within this window resumes the session
    resume_window_s: float = 30.0
    #: ``end``: how long pending turns may take to finish before the session closes
    end_drain_s: float = 60.0
    #: ``end``: frames of silence with nothing pending before the session closes
    end_quiet_frames: int = 40
    #: acknowledged playback: a mark every this many frames (and on a turn's first/last)
    mark_every_frames: int = 5
    #: acknowledged playback: a turn whose last mark is not echoed within this completes
    #: unconfirmed (a carrier that lost the mark must not hold the turn open)
    playback_ack_timeout_s: float = 5.0
    #: ``reply_text`` deltas: buffered text goes out once it ends a clause, reaches this
    #: many characters, or has waited ``reply_text_flush_ms``
    reply_text_max_chars: int = 120
    reply_text_flush_ms: float = 150.0
    #: the commit point of a cancel (F-039, the spec's ``transport.commit_ms``): this much
    #: of the reply after the play position still plays; 0: a cancel clears it all
    commit_ms: int = 0
