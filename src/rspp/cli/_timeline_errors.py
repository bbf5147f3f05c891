"""``rspp timeline errors``: the error records of timelines, aggregated (F-131).

A node failure is recorded as a TelemetryLane ``error`` record (``reason``: the taxonomy
code, ``node_id``: the failing node); its turn's ``abort`` names the same code. This
command groups them by code and node across one or more timelines, with the code's
retryability and deterministic default action (``rspp.kernel.ERROR_ACTIONS``), the
turns they hit and how many of those turns aborted on that code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import typer

from rspp.kernel import ERROR_ACTIONS
from rspp.observability import TimelineFormatError, TimelineLine, iter_timeline

__all__ = ["ErrorGroup", "aggregate_errors", "register"]


@dataclass(slots=True)
class ErrorGroup:
    """The error records of one (code, node) pair; ``turns``: ``file/session/turn`` tags."""

    error_code: str
    node_id: str
    count: int = 0
    first_sequence: int = -1
    last_sequence: int = -1
    turns: set[str] = field(default_factory=set)
    aborted_turns: int = 0

    def as_dict(self) -> dict[str, object]:
        retryable, action = ERROR_ACTIONS.get(self.error_code, (False, "unknown"))
        return {"error_code": self.error_code, "node_id": self.node_id, "count": self.count,
                "retryable": retryable, "default_action": action,
                "turns": len(self.turns), "aborted_turns": self.aborted_turns,
                "first_sequence": self.first_sequence, "last_sequence": self.last_sequence}


def _is_error_record(line: TimelineLine) -> bool:
    event_id = str(line.get("event_id") or "")
    return (line.kind == "event_record" and line.get("lane") == "TelemetryLane"
            and event_id.rsplit(":", 2)[-2:-1] == ["error"])


def aggregate_errors(timelines: dict[str, list[TimelineLine]]) -> list[ErrorGroup]:
    """Error groups of the ``timelines`` (file name -> lines; a turn is one file's session
    and turn), ordered by count (largest first), then code and node."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for name, lines in timelines.items():
        aborts = {(str(ln.get("session_id")), str(ln.get("turn_id")), str(ln.get("reason")))
                  for ln in lines if ln.kind == "control_signal" and ln.get("signal") == "abort"}
        for ln in lines:
            if not _is_error_record(ln):
                continue
            key = (str(ln.get("reason") or "unknown"), str(ln.get("node_id") or "-"))
            g = groups.setdefault(key, ErrorGroup(*key))
            seq = int(ln.get("runtime_sequence") or 0)
            g.count += 1
            g.first_sequence = seq if g.first_sequence < 0 else min(g.first_sequence, seq)
            g.last_sequence = max(g.last_sequence, seq)
            session, turn = str(ln.get("session_id")), ln.get("turn_id")
            if turn is not None and (tag := f"{name}/{session}/{turn}") not in g.turns:
                g.turns.add(tag)
                g.aborted_turns += (session, str(turn), key[0]) in aborts
    return sorted(groups.values(), key=lambda g: (-g.count, g.error_code, g.node_id))


def errors(
    files: list[Path] = typer.Argument(..., help="Timeline files (JSON Lines or MessagePack)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Aggregate the error records of timelines by code and node (exit 1 if there are any)."""
    timelines: dict[str, list[TimelineLine]] = {}
    for path in files:
        if not path.is_file():
            raise TimelineFormatError(str(path), 0, "file not found; pass a timeline file "
                                      "written by `rspp run --timeline`")
        lines = timelines.setdefault(str(path), [])
        for item in iter_timeline(path, payloads=False):
            if isinstance(item, TimelineFormatError):
                raise item
            lines.append(item)
    groups = [g.as_dict() for g in aggregate_errors(timelines)]
    if as_json:
        typer.echo(json.dumps({"errors": groups, "total": sum(int(str(g["count"]))
                                                              for g in groups)}))
    elif not groups:
        typer.echo("no error records")
    else:
        typer.echo(f"{'error_code':<28} {'node':<16} {'count':>5} {'action':<12} "
                   f"{'retryable':<9} {'turns':>5} {'aborted':>7}")
        for g in groups:
            typer.echo(f"{g['error_code']!s:<28} {g['node_id']!s:<16} {g['count']!s:>5} "
                       f"{g['default_action']!s:<12} {g['retryable']!s:<9} "
                       f"{g['turns']!s:>5} {g['aborted_turns']!s:>7}")
    if groups:
        raise typer.Exit(1)


def register(timeline_app: typer.Typer) -> None:
    """Attach ``errors`` to ``rspp timeline``."""
    timeline_app.command("errors")(errors)
