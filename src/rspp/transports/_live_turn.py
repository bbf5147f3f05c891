"""A live session's turn as its transport sees it: the reply outputs still open, the reply
text, the audio queued to play and the playback progress (sent, heard, finished)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from rspp.transports._reply import ReplyTextStream

__all__ = ["LiveTurn"]


@dataclass(slots=True)
class LiveTurn:
    """One turn's reply in a live session: the outputs still open, its text, the audio
    queued to play and how far playback got (sent, heard, finished)."""

    turn_id: str | None
    #: the reply outputs that have not ended yet (the reply ends when none is left)
    open_ports: set[str]
    text: ReplyTextStream
    pending: bytearray = field(default_factory=bytearray)
    ended: bool = False
    #: cancelled with a commit point: the committed audio in ``pending`` still plays
    committing: bool = False
    started: bool = False
    accepted: bool = False
    finished: str | None = None
    transcript: str = ""
    sent_frames: int = 0
    #: acknowledged playback: frames the client confirmed heard; last frame marked
    heard_frames: int = 0
    last_marked: bool = False
    #: acknowledged playback: every frame sent, waiting for the last mark's echo
    unconfirmed: asyncio.TimerHandle | None = None
