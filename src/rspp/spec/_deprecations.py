"""Deprecation lifecycle of spec fields (F-163): warning, enforcement, removal.

A deprecated field declares three dates. Before ``enforce_on`` using it is a
warning naming the enforcement and removal dates and the migration; from
``enforce_on`` it is an error (lint, publish and ``rspp run`` refuse the spec) that
says how to migrate; from ``remove_on`` the field is gone and reads as unknown. The
phase is decided by the date the check runs for (``rspp lint --as-of``; the control
plane's clock at publish), so every tool agrees on the phase of a given day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal

import msgspec

Phase = Literal["warning", "enforced", "removed"]


class Deprecation(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When a field was deprecated, enforced and removed, and what replaces it."""

    since: date
    enforce_on: date
    remove_on: date
    #: what to do instead (shown with every phase)
    migration: str

    def __post_init__(self) -> None:
        if not self.since <= self.enforce_on <= self.remove_on:
            raise ValueError("a deprecation runs since <= enforce_on <= remove_on")

    def phase(self, as_of: date) -> Phase | None:
        if as_of < self.since:
            return None
        if as_of < self.enforce_on:
            return "warning"
        return "enforced" if as_of < self.remove_on else "removed"

    def message(self, field: str, as_of: date) -> str:
        phase = self.phase(as_of)
        if phase == "removed":
            return f"{field} was removed on {self.remove_on.isoformat()}"
        if phase == "enforced":
            return (f"{field} is deprecated and refused since {self.enforce_on.isoformat()} "
                    f"(removed on {self.remove_on.isoformat()})")
        return (f"{field} is deprecated since {self.since.isoformat()}: refused from "
                f"{self.enforce_on.isoformat()}, removed on {self.remove_on.isoformat()}")


def day_of(epoch_ms: int) -> date:
    """The UTC date of a millisecond timestamp (a control plane's clock)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).date()


def today() -> date:
    return datetime.now(UTC).date()
