"""JSON and Markdown renderings of a :class:`~rspp.contracts.DivergenceReport`.

The JSON form (machine readable, F-077) is::

    {"passed": bool, "mode": "...", "failing_classes": ["PLAN", ...],
     "divergences": {"ORDERING": n, "PLAN": n, "OUTCOME": n, "TIMING": n,
                     "AUTHORITY": n, "PROVIDER_CHOICE": n},
     "tolerances": {"timing_ms": 50, ...},
     "findings": [{"class": "PLAN", "turn_id": ..., "message": ..., "expected": ...,
                   "actual": ..., "event_ids": [...]}]}
"""

from __future__ import annotations

from typing import Any

import msgspec

from rspp.contracts import DivergenceClass, DivergenceReport

__all__ = ["report_to_json", "report_to_markdown"]


def _failing(report: DivergenceReport) -> list[str]:
    failing = [c.name for c in DivergenceClass
               if c in report.policy.fail_on and report.counts.get(c, 0)]
    limit = report.policy.max_timing_findings
    if limit is not None and report.counts.get(DivergenceClass.TIMING, 0) > limit:
        failing.append(DivergenceClass.TIMING.name)
    return failing


def report_to_json(report: DivergenceReport) -> dict[str, Any]:
    """The report as JSON-ready builtins with upper-case class names."""
    return {
        "passed": report.passed,
        "mode": str(report.mode),
        "failing_classes": _failing(report),
        "divergences": {c.name: int(report.counts.get(c, 0)) for c in DivergenceClass},
        "tolerances": msgspec.to_builtins(report.tolerances),
        "findings": [
            {
                "class": f.divergence_class.name,
                "turn_id": f.turn_id,
                "message": f.message,
                "expected": f.expected,
                "actual": f.actual,
                "event_ids": list(f.event_ids),
            }
            for f in report.findings
        ],
    }


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def report_to_markdown(report: DivergenceReport) -> str:
    """A human-readable Markdown report: verdict, per-class counts, findings."""
    failing = set(_failing(report))
    lines = [
        "# Replay divergence report",
        "",
        f"**Verdict:** {'PASS' if report.passed else 'FAIL'} (mode `{report.mode}`, "
        f"timing tolerance {report.tolerances.timing_ms} ms)",
        "",
        "| class | count | fails run |",
        "|---|---:|---|",
    ]
    for c in DivergenceClass:
        fails = "yes" if c.name in failing else ("policy" if c in report.policy.fail_on else "no")
        lines.append(f"| {c.name} | {report.counts.get(c, 0)} | {fails} |")
    lines += ["", "## Findings", ""]
    if not report.findings:
        lines.append("No divergences.")
    else:
        lines += ["| class | turn | message | expected | actual |", "|---|---|---|---|---|"]
        for f in report.findings:
            lines.append(
                f"| {f.divergence_class.name} | {_cell(f.turn_id)} | {_cell(f.message)} | "
                f"{_cell(f.expected)} | {_cell(f.actual)} |"
            )
    return "\n".join(lines) + "\n"
