"""Conformance results and certification against a profile (F-164).

A suite's run is a :class:`SuiteResults` (one :class:`CategoryResult` per category it
ran, saved as JSON by ``rspp conformance check --out``). :func:`certify` judges results
against a profile: every category of the profile is ``pass``, ``fail`` or ``missing``;
the subject is certified only when every mandatory category passed, so results that
omit a mandatory category are rejected, naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import msgspec

from rspp.conformance._profile import ConformanceError, Profile, Target

__all__ = ["RESULTS_FORMAT", "CategoryResult", "Certification", "SuiteResults", "certify",
           "load_results"]

RESULTS_FORMAT = "rspp.conformance.results/v1"
Status = Literal["pass", "fail", "missing"]


class CategoryResult(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one contract category went: passed, and what was seen (the failure, if any)."""

    category: str
    passed: bool
    detail: str = ""


class SuiteResults(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The results of one conformance run against one subject (adapter, node package)."""

    format: Literal["rspp.conformance.results/v1"] = "rspp.conformance.results/v1"
    target: Target
    subject: str
    profile: str
    results: tuple[CategoryResult, ...]

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()


class Row(msgspec.Struct, frozen=True, kw_only=True):
    category: str
    mandatory: bool
    status: Status
    detail: str = ""


class Certification(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict: certified only when every mandatory category passed."""

    profile: str
    target: Target
    subject: str
    certified: bool
    rows: tuple[Row, ...]
    #: why it is not certified: one line per failed or missing mandatory category
    rejected: tuple[str, ...]
    #: categories the results carry that the profile does not list (not judged)
    unknown: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]

    def lines(self) -> list[str]:
        """The human report: one line per category, then the verdict."""
        out = [f"{self.subject}: profile {self.profile} ({self.target})"]
        for r in self.rows:
            tag = "mandatory" if r.mandatory else "optional"
            out.append(f"  {r.status.upper():7} {r.category} ({tag})"
                       + (f": {r.detail}" if r.detail and r.status != "pass" else ""))
        out.extend(f"  unknown {u} (not in the profile, not judged)" for u in self.unknown)
        out.append("CERTIFIED" if self.certified
                   else "REJECTED: " + "; ".join(self.rejected))
        return out


def certify(profile: Profile, results: SuiteResults) -> Certification:
    """Judge ``results`` against ``profile`` (a target mismatch rejects everything)."""
    seen = {r.category: r for r in results.results}
    rows: list[Row] = []
    rejected: list[str] = []
    if results.target != profile.target:
        rejected.append(f"the results are of a {results.target}, the profile "
                        f"{profile.ref} is for a {profile.target}")
    for cat in profile.categories:
        got = seen.get(cat.name)
        status: Status = "missing" if got is None else "pass" if got.passed else "fail"
        detail = got.detail if got is not None else "not in the results"
        rows.append(Row(category=cat.name, mandatory=cat.mandatory, status=status,
                        detail=detail))
        if cat.mandatory and status != "pass":
            rejected.append(f"mandatory category {cat.name} {status}"
                            + (f" ({detail})" if status == "fail" and detail else ""))
    listed = {c.name for c in profile.categories}
    return Certification(
        profile=profile.ref, target=profile.target, subject=results.subject,
        certified=not rejected, rows=tuple(rows), rejected=tuple(rejected),
        unknown=tuple(sorted(set(seen) - listed)))


def load_results(path: Path) -> SuiteResults:
    """Results saved by ``rspp conformance check --out``; ConformanceError names the field."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConformanceError(f"RESULTS {path}: not readable JSON: {exc}") from None
    try:
        return msgspec.convert(raw, SuiteResults)
    except msgspec.ValidationError as exc:
        raise ConformanceError(f"RESULTS {path}: {exc}") from None
