"""Playback mark names: what a live transport puts on reply frames for a carrier to echo
(``<turn>#<frames>``, ``$`` on a reply's last mark), and how an echo is read back."""

from __future__ import annotations

__all__ = ["mark_name", "parse_mark"]


def mark_name(turn_id: str, frames: int, *, last: bool = False) -> str:
    """The mark after ``turn_id``'s first ``frames`` frames: ``<turn>#<frames>``, with a
    trailing ``$`` on the last mark of the turn's reply (see :func:`parse_mark`)."""
    return f"{turn_id}#{frames}{'$' if last else ''}"


def parse_mark(name: str) -> tuple[str, int] | None:
    """``(turn_id, frames)`` of an echoed mark name; None when it is not one of ours."""
    turn_id, sep, frames = name.removesuffix("$").rpartition("#")
    if not sep or not turn_id or not frames.isdigit() or len(frames) > 9:
        return None
    return turn_id, int(frames)
