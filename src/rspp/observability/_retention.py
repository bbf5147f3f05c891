"""Retention of recordings (F-071, F-116): tenant-scoped policies and a sweep.

Layout: ``<root>/<tenant>/<name>.jsonl`` (or ``.msgpack``); files directly under
``<root>`` (``rspp serve --timeline-dir``: ``<root>/<session>.jsonl``) fall under the
default age (tenant ``-`` in the audit); a file's age is its modification time.
:func:`sweep` deletes files older than the tenant's
``max_age_s`` (or the default) and appends one audit line per deletion to
``<root>/retention-audit.jsonl`` (tenant, file, age, policy), so retention is
auditable and tenant-scoped.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

from rspp.observability._errors import ObservabilityError

__all__ = ["RetentionPolicy", "SweepResult", "sweep"]

AUDIT_FILE = "retention-audit.jsonl"
_SUFFIXES = {".jsonl", ".msgpack", ".mpk", ".log"}


class RetentionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Maximum age of recordings per tenant; ``None`` keeps forever."""

    default_max_age_s: float | None = 7 * 24 * 3600
    per_tenant: dict[str, float | None] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        ages = {"default_max_age_s": self.default_max_age_s}
        ages.update({f"per_tenant[{t!r}]": age for t, age in self.per_tenant.items()})
        for field, age in ages.items():
            if age is not None and not age >= 0:  # also refuses NaN
                raise ObservabilityError(
                    f"RetentionPolicy.{field} must be >= 0 seconds or None (keep forever), "
                    f"got {age!r}; a negative age would delete every recording"
                )

    def max_age_for(self, tenant: str) -> float | None:
        if tenant in self.per_tenant:
            return self.per_tenant[tenant]
        return self.default_max_age_s


class SweepResult(msgspec.Struct, kw_only=True):
    deleted: list[str] = msgspec.field(default_factory=list)
    kept: list[str] = msgspec.field(default_factory=list)


class _Audit(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    tenant: str
    file: str
    age_s: float
    max_age_s: float
    swept_at_s: float


def sweep(root: str | Path, policy: RetentionPolicy, *, now_s: float,
          tenants: Mapping[str, object] | None = None) -> SweepResult:
    """Delete expired recordings under ``root``; ``now_s`` is wall-clock seconds."""
    base = Path(root)
    result = SweepResult()
    if not base.is_dir():
        return result
    audit: list[bytes] = []
    groups: list[tuple[str, list[Path], float | None]] = []
    if tenants is None:
        top = [p for p in base.iterdir() if p.is_file() and p.name != AUDIT_FILE]
        groups.append(("-", sorted(top), policy.default_max_age_s))
    for tenant_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        tenant = tenant_dir.name
        if tenants is not None and tenant not in tenants:
            continue
        groups.append((tenant, sorted(tenant_dir.rglob("*")), policy.max_age_for(tenant)))
    for tenant, files, max_age in groups:
        for file in files:
            if not file.is_file() or file.suffix not in _SUFFIXES:
                continue
            try:
                age = now_s - file.stat().st_mtime
            except FileNotFoundError:
                continue  # gone meanwhile (a concurrent sweep, a moved session)
            rel = str(file.relative_to(base))
            if max_age is not None and age > max_age:
                file.unlink(missing_ok=True)
                result.deleted.append(rel)
                audit.append(msgspec.json.encode(_Audit(
                    action="deleted", tenant=tenant, file=rel, age_s=round(age, 3),
                    max_age_s=max_age, swept_at_s=now_s)) + b"\n")
            else:
                result.kept.append(rel)
    if audit:
        with (base / AUDIT_FILE).open("ab") as handle:
            handle.write(b"".join(audit))
    return result
