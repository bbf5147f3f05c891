"""Replay requests and divergence reports (the types the replay engine speaks).

A replay compares a baseline recording with a candidate run and classifies each
difference into a :class:`DivergenceClass`. Timing differences within the
request's tolerance are not divergences; a :class:`DivergencePolicy` decides which
classes fail the run. :meth:`DivergenceReport.build` derives counts and the
pass/fail verdict from the findings so both are always consistent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

import msgspec

from rspp.contracts._enums import ReplayMode
from rspp.contracts._types import NonEmptyStr, NonNegInt


class DivergenceClass(StrEnum):
    ORDERING = "ordering"  # same events, different runtime order
    PLAN = "plan"  # a different ResolvedTurnPlan (plan_hash) for the turn
    OUTCOME = "outcome"  # a different admission/authority decision or turn transition
    TIMING = "timing"  # a timestamp moved beyond tolerance
    AUTHORITY = "authority"  # a different authority epoch / lease decision
    PROVIDER_CHOICE = "provider_choice"  # another provider served an invocation


class ReplayTolerances(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How far a candidate may drift before a difference counts."""

    timing_ms: NonNegInt = 50
    ignore_wall_clock: bool = True


class DivergencePolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which divergence classes fail a replay (timing is informational by default)."""

    fail_on: tuple[DivergenceClass, ...] = (
        DivergenceClass.ORDERING,
        DivergenceClass.PLAN,
        DivergenceClass.OUTCOME,
        DivergenceClass.AUTHORITY,
        DivergenceClass.PROVIDER_CHOICE,
    )
    max_timing_findings: NonNegInt | None = None

    def __post_init__(self) -> None:
        # AUTHORITY divergences (another epoch, a stale write accepted or refused
        # differently) are never waivable: every policy fails on them.
        if DivergenceClass.AUTHORITY not in self.fail_on:
            msgspec.structs.force_setattr(
                self, "fail_on", (*self.fail_on, DivergenceClass.AUTHORITY))


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Replay ``recording_ref`` in ``mode``; optionally only some turns."""

    recording_ref: NonEmptyStr
    mode: ReplayMode
    turn_ids: tuple[NonEmptyStr, ...] = ()
    tolerances: ReplayTolerances = ReplayTolerances()
    policy: DivergencePolicy = DivergencePolicy()


class Divergence(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One difference between baseline (``expected``) and candidate (``actual``)."""

    divergence_class: DivergenceClass
    message: NonEmptyStr
    turn_id: str | None = None
    event_ids: tuple[str, ...] = ()
    expected: str | None = None
    actual: str | None = None


class DivergenceReport(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All findings of one replay, counts per class and the policy verdict."""

    mode: ReplayMode
    findings: tuple[Divergence, ...]
    counts: dict[DivergenceClass, NonNegInt]
    tolerances: ReplayTolerances
    policy: DivergencePolicy
    passed: bool

    @classmethod
    def build(
        cls,
        mode: ReplayMode,
        findings: Iterable[Divergence],
        tolerances: ReplayTolerances | None = None,
        policy: DivergencePolicy | None = None,
    ) -> DivergenceReport:
        """Count findings per class and apply ``policy`` to decide ``passed``."""
        listed = tuple(findings)
        pol = policy or DivergencePolicy()
        counter = Counter(f.divergence_class for f in listed)
        counts = {c: counter.get(c, 0) for c in DivergenceClass}
        failed = any(counts[c] for c in pol.fail_on)
        if pol.max_timing_findings is not None:
            failed = failed or counts[DivergenceClass.TIMING] > pol.max_timing_findings
        return cls(
            mode=mode,
            findings=listed,
            counts=counts,
            tolerances=tolerances or ReplayTolerances(),
            policy=pol,
            passed=not failed,
        )
