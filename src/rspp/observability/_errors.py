"""Errors of the observability package (all derive from :class:`rspp.errors.RSPPError`).

::

    RSPPError
    └── ObservabilityError
        └── TimelineFormatError       a timeline file line is malformed (carries path, line)
"""

from __future__ import annotations

from rspp.errors import RSPPError


class ObservabilityError(RSPPError):
    """Root of observability errors."""


class TimelineFormatError(ObservabilityError):
    """A line of a timeline file could not be decoded; names the file and line number.

    Rendered ``FILE:LINE: message`` (``FILE: message`` for the file as a whole, line 0).
    """

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message

