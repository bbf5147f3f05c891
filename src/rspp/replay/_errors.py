"""Errors of the replay engine (OR-03).

::

    RSPPError
    └── ObservabilityError
        └── ReplayError               the replay could not run
            └── ReplayInputError      the recording cannot drive the requested replay
"""

from __future__ import annotations

from rspp.observability._errors import ObservabilityError

__all__ = ["ReplayError", "ReplayInputError"]


class ReplayError(ObservabilityError):
    """A replay could not run (engine misuse, a cursor from another recording, ...)."""


class ReplayInputError(ReplayError):
    """The timeline lacks what the replay needs; the message names the line/field and the fix."""
