"""Plain-text rendering of a run: transcript, replies and the per-turn latency table."""

from __future__ import annotations

from rspp.runner._runner import RunResult

__all__ = ["latency_rows", "render_result"]

_COLUMNS = ("turn", "outcome", "turn-open decision", "first output", "end to end",
            "cancel fence")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def latency_rows(result: RunResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in result.turns:
        outcome = t.terminal or "-"
        if t.terminal == "abort" and t.reason:
            outcome = f"abort({t.reason})"
        rows.append((t.turn_id.rsplit(":", 1)[-1], outcome, _ms(t.turn_open_decision_ms),
                     _ms(t.first_output_ms), _ms(t.end_to_end_ms), _ms(t.cancel_fence_ms)))
    return rows


def render_result(result: RunResult) -> str:
    lines = []
    for t in result.turns:
        n = t.turn_id.rsplit(":", 1)[-1]
        lines.append(f"turn {n} transcript: {t.transcript or '(nothing recognised)'}")
        mode = " [text only: TTS degraded]" if t.degraded else ""
        lines.append(f"turn {n} reply: {t.reply or '(no reply)'}{mode}")
    if not result.turns:
        lines.append("no turn was detected in the input (is there speech in it?)")
    rows = [_COLUMNS, *latency_rows(result)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines.append("")
    lines.append("per-turn latency")
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"reply audio: {result.output_seconds:.2f} s")
    return "\n".join(lines)
