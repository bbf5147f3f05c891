"""Replay report: the JSON document and the console summary of one replay (F-127).

The JSON carries ``divergences`` - counts per class by name (``ORDERING``,
``PLAN``, ``OUTCOME``, ``TIMING``, ``AUTHORITY``, ``PROVIDER_CHOICE``) - the
individual ``findings``, the failing classes of the policy and the verdict, plus
how the replay ran (modes, recording, candidate size).
"""

from __future__ import annotations

from typing import Any

import msgspec

from rspp.contracts import DivergenceClass
from rspp.replay._engine import ReplayResult

__all__ = ["failing_classes", "replay_report_json", "replay_summary_text"]


def failing_classes(result: ReplayResult) -> list[str]:
    """Names of the classes present in the findings that the policy fails on."""
    r = result.report
    out = [c.name for c in DivergenceClass if r.counts.get(c, 0) and c in r.policy.fail_on]
    limit = r.policy.max_timing_findings
    if limit is not None and r.counts.get(DivergenceClass.TIMING, 0) > limit \
            and "TIMING" not in out:
        out.append("TIMING")
    return out


def replay_report_json(result: ReplayResult, *, recording: str = "",
                       spec: str = "") -> dict[str, Any]:
    """The report document (JSON-ready builtins)."""
    r = result.report
    doc: dict[str, Any] = {
        "recording": recording or result.cursor.recording_ref,
        "spec": spec,
        "mode": result.mode.value,
        "decision_mode": result.decision_mode.value,
        "passed": r.passed,
        "failing_classes": failing_classes(result),
        "divergences": {c.name: r.counts.get(c, 0) for c in DivergenceClass},
        "tolerances": msgspec.to_builtins(r.tolerances),
        "fail_on": [c.name for c in r.policy.fail_on],
        "ingress_events": result.cursor.total,
        "candidate_lines": result.candidate_lines,
        "provider_outputs_served": result.provider_outputs_served,
        "decisions_replayed": list(result.decisions_replayed),
        "notes": list(result.notes),
        "findings": [
            {"class": f.divergence_class.name, **{k: v for k, v in msgspec.to_builtins(f).items()
                                                  if k != "divergence_class"}}
            for f in r.findings
        ],
    }
    return doc


def replay_summary_text(result: ReplayResult, *, max_findings: int = 20) -> str:
    """A short human summary: verdict, counts per class, the first findings."""
    r = result.report
    verdict = "PASS" if r.passed else "FAIL (" + ", ".join(failing_classes(result)) + ")"
    lines = [f"replay {result.mode.value} / {result.decision_mode.value}: {verdict}",
             f"ingress events {result.cursor.total}, candidate lines {result.candidate_lines}, "
             f"provider outputs served {result.provider_outputs_served}",
             "divergences: " + ", ".join(f"{c.name}={r.counts.get(c, 0)}"
                                          for c in DivergenceClass)]
    lines.extend(f"note: {n}" for n in result.notes)
    for f in r.findings[:max_findings]:
        turn = f" [{f.turn_id}]" if f.turn_id else ""
        detail = f" expected={f.expected!r} actual={f.actual!r}" if f.expected or f.actual else ""
        lines.append(f"  {f.divergence_class.name}{turn}: {f.message}{detail}")
    if len(r.findings) > max_findings:
        lines.append(f"  ... and {len(r.findings) - max_findings} more (see --report)")
    return "\n".join(lines)
