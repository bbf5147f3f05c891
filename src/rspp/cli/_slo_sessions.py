"""``rspp slo report --per-session``: each session against its own bounds (F-105).

The bounds come from the spec's ``slo.session`` (``--spec``), each overridable on the
command line; the verdicts are computed by :func:`rspp.observability.evaluate_sessions`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from rspp.observability import SessionBounds, SessionVerdict

__all__ = ["session_bounds", "session_rows", "show_sessions"]

#: breaches printed before the rest is summarised (all of them are in ``--json``)
_SHOWN = 20


def session_bounds(slo: Any, overrides: dict[str, float | None]) -> SessionBounds:
    """The spec's ``slo.session`` bounds (``slo``: its ``SloSpec`` or None) with the set
    command-line ``overrides`` on top."""
    base = SessionBounds()
    section = getattr(slo, "session", None) if slo is not None else None
    if section is not None:
        base = SessionBounds(pool_wait_max_ms=section.pool_wait_max_ms,
                             first_output_p95_ms=section.first_output_p95_ms,
                             end_to_end_p95_ms=section.end_to_end_p95_ms)
    return base.merged(overrides)


def session_rows(verdicts: list[SessionVerdict]) -> list[dict[str, Any]]:
    """The verdicts as JSON objects (``pass`` as the field name)."""
    return [{"session_id": v.session_id, "turns": v.turns, "pooled_turns": v.pooled_turns,
             "pool_wait_max_ms": v.pool_wait_max_ms, "pool_wait_turn": v.pool_wait_turn,
             "pool_wait_total_ms": v.pool_wait_total_ms,
             "first_output_p95_ms": v.first_output_p95_ms,
             "end_to_end_p95_ms": v.end_to_end_p95_ms, "pass": v.passed,
             "breaches": v.breaches} for v in verdicts]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def show_sessions(console: Console, verdicts: list[SessionVerdict], bounds: SessionBounds,
                  *, table: bool) -> None:
    """The per-session table (``table``) and every breach as one line naming its session."""
    if table:
        limits = ", ".join(f"{name} <= {value:g}" for name, value in
                           (("pool_wait_max_ms", bounds.pool_wait_max_ms),
                            ("first_output_p95_ms", bounds.first_output_p95_ms),
                            ("end_to_end_p95_ms", bounds.end_to_end_p95_ms))
                           if value is not None) or "no bounds set: measured only"
        out = Table(title=f"Per-session isolation ({limits})")
        for column in ("session", "turns", "pooled", "pool wait max", "turn", "pool wait total",
                       "first output p95", "end to end p95", "status"):
            out.add_column(column, no_wrap=column in ("session", "status"))
        for v in verdicts:
            out.add_row(v.session_id, str(v.turns), str(v.pooled_turns),
                        _fmt(v.pool_wait_max_ms), v.pool_wait_turn or "-",
                        _fmt(v.pool_wait_total_ms), _fmt(v.first_output_p95_ms),
                        _fmt(v.end_to_end_p95_ms),
                        "[green]pass[/]" if v.passed else "[bold red]fail[/]")
        console.print(out)
    breaches = [b for v in verdicts for b in v.breaches]
    for line in breaches[:_SHOWN]:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if len(breaches) > _SHOWN:
        console.print(f"... and {len(breaches) - _SHOWN} more breach(es) (--json lists all)",
                      highlight=False, markup=False)
