"""The error a live session raises for client input it cannot take."""

from __future__ import annotations

__all__ = ["InputRejected"]


class InputRejected(ValueError):
    """Client input the session cannot take; ``field`` names it (an ``error`` event with
    ``code``: ``bad_input``, or ``turn_deferred``/``turn_rejected`` for input whose turn
    was refused before it opened, F-141)."""

    def __init__(self, field: str, message: str, *, code: str = "bad_input") -> None:
        super().__init__(message)
        self.field = field
        self.code = code
