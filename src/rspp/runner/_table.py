"""Plain-text rendering of a run: transcript, replies and the per-turn latency table.

Every latency column is named for what it measures and computed from the run's timeline
records by :func:`rspp.observability.turn_latencies`, the implementation the quality
gates of ``rspp slo report`` use (same anchors, same numbers).
"""

from __future__ import annotations

from rspp.runner._runner import RunResult

__all__ = ["LATENCY_COLUMNS", "latency_rows", "render_result"]

#: (header, meaning) of every column after turn and outcome
LATENCY_COLUMNS = (
    ("speech end -> open", "end of user speech (VAD) to turn_open: endpointing wait + "
     "turn-open decision"),
    ("speech end -> audio", "end of user speech to the first reply audio played "
     "(gate 7, end to end)"),
    ("open -> audio", "turn_open to the first reply audio played"),
    ("open decision", "turn_open_proposed to turn_open (gate 1)"),
    ("cancel fence", "cancel accepted to output fenced (gate 3)"),
)
_COLUMNS = ("turn", "outcome", *(h for h, _ in LATENCY_COLUMNS))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def latency_rows(result: RunResult) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for t in result.turns:
        outcome = t.terminal or "-"
        if t.terminal == "abort" and t.reason:
            outcome = f"abort({t.reason})"
        rows.append((t.turn_id.rsplit(":", 1)[-1], outcome, _ms(t.speech_end_to_turn_open_ms),
                     _ms(t.speech_end_to_first_audio_ms), _ms(t.turn_open_to_first_audio_ms),
                     _ms(t.turn_open_decision_ms), _ms(t.cancel_fence_ms)))
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
    lines.append("per-turn latency (same definitions as `rspp slo report`)")
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for header, meaning in LATENCY_COLUMNS:
        lines.append(f"  {header}: {meaning}")
    if any(t.speech_end_source == "ingress" for t in result.turns):
        lines.append("  (speech end of some turns is the last input frame before the turn was "
                     "proposed: their VAD reported no speech end)")
    lines.append(f"reply audio: {result.output_seconds:.2f} s")
    u = result.usage
    if u is not None:
        lines.append(f"session summary: {u.turns} turn(s), {u.llm_tokens} LLM tokens, "
                     f"{u.stt_audio_seconds:.2f} s of audio to STT, {u.tts_characters} TTS "
                     f"characters, estimated cost ${u.estimated_cost_usd:.6f}")
    return "\n".join(lines)
