"""``rspp timeline`` (show, diff, sweep; ``view`` in ``_timeline_view``) and ``rspp slo report``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from rspp.cli._errors import fail, guard_commands
from rspp.contracts import DivergencePolicy, ReplayTolerances
from rspp.observability import (
    GATES,
    RetentionPolicy,
    TimelineFilter,
    TimelineFormatError,
    TimelineLine,
    compare_timelines,
    evaluate_gates,
    evaluate_sessions,
    filter_lines,
    gates_with,
    iter_timeline,
    report_to_json,
    report_to_markdown,
    sweep,
    timeline_table,
    timeline_text,
)

timeline_app = typer.Typer(name="timeline", help="Inspect recorded timelines.",
                           no_args_is_help=True)
slo_app = typer.Typer(name="slo", help="MVP quality gates from recorded timelines.",
                      no_args_is_help=True)



def _console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console for tables: the terminal's width, or 160 columns when piped to a file."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, soft_wrap=soft_wrap, width=width)

def _lines(paths: list[Path], *, payloads: bool = True) -> Iterator[TimelineLine]:
    """Stream the lines of ``paths``; the first malformed line raises (one line, exit 2)."""
    for path in paths:
        if not path.is_file():
            raise TimelineFormatError(str(path), 0, "file not found; pass a timeline file "
                                      "written by `rspp run --timeline`")
        for item in iter_timeline(path, payloads=payloads):
            if isinstance(item, TimelineFormatError):
                raise item
            yield item


@timeline_app.command("show")
def show(
    file: Path = typer.Argument(..., help="Timeline file (JSON Lines or MessagePack)."),
    session: str | None = typer.Option(None, "--session", help="Only this session_id."),
    turn: str | None = typer.Option(None, "--turn", help="Only this turn_id."),
    lane: str | None = typer.Option(None, "--lane", help="ControlLane, DataLane, TelemetryLane "
                                    "(or a prefix such as 'control')."),
    node: str | None = typer.Option(None, "--node", help="Only this node (node_id or emitter)."),
    type_: str | None = typer.Option(None, "--type", help="Kind, signal or outcome, e.g. "
                                     "control_signal, commit, admit."),
) -> None:
    """Show a timeline as an ordered, filterable table (exit 2 if a line is malformed)."""
    console = _console(soft_wrap=False)
    spec = TimelineFilter(session=session, turn=turn, lane=lane, node=node, type=type_)
    total = 0

    def counted() -> Iterator[TimelineLine]:
        nonlocal total
        for line in _lines([file]):
            total += 1
            yield line

    shown = filter_lines(counted(), spec)
    title = f"{file.name} ({len(shown)} of {total} lines)"
    if sys.stdout.isatty():
        console.print(timeline_table(shown, title=title))
        return
    for text in timeline_text(shown, title=title):  # piped: plain aligned rows, streamed
        typer.echo(text)


@timeline_app.command("diff")
def diff(
    expected: Path = typer.Argument(..., help="Baseline timeline."),
    actual: Path = typer.Argument(..., help="Candidate timeline."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown report."),
    timing_ms: int = typer.Option(50, "--timing-ms", min=0, help="TIMING tolerance in ms."),
) -> None:
    """Compare two timelines; exit 1 when a failing divergence class is present."""
    console = Console()
    exp, act = list(_lines([expected])), list(_lines([actual]))
    result = compare_timelines(exp, act, tolerances=ReplayTolerances(timing_ms=timing_ms),
                               policy=DivergencePolicy())
    data = report_to_json(result)
    if report is not None:
        report.write_text(json.dumps(data, indent=2) + "\n")
    if markdown is not None:
        markdown.write_text(report_to_markdown(result))
    summary = ", ".join(f"{name}={count}" for name, count in data["divergences"].items())
    console.print(f"{'PASS' if result.passed else 'FAIL'}: {summary}", highlight=False)
    if not result.passed:
        raise typer.Exit(1)


@timeline_app.command("sweep")
def sweep_cmd(
    root: Path = typer.Argument(..., help="Recordings root: ROOT/<tenant>/<file>.jsonl"),
    max_age_days: float = typer.Option(7.0, "--max-age-days", min=0.0),
    tenant: list[str] = typer.Option([], "--tenant", help="Per-tenant override TENANT=DAYS."),
) -> None:
    """Delete recordings older than the retention policy (audited in retention-audit.jsonl)."""
    overrides: dict[str, float | None] = {}
    for item in tenant:
        name, sep, days = item.partition("=")
        try:
            value = float(days)
        except ValueError:
            value = -1.0
        if not (sep and name) or value < 0:
            raise typer.BadParameter(f"--tenant {item!r}: use TENANT=DAYS, e.g. acme=30")
        overrides[name] = value * 86400
    policy = RetentionPolicy(default_max_age_s=max_age_days * 86400, per_tenant=overrides)
    result = sweep(root, policy, now_s=time.time())
    typer.echo(f"deleted {len(result.deleted)} file(s), kept {len(result.kept)}")
    for name in result.deleted:
        typer.echo(f"deleted {name}")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@slo_app.command("report")
def slo_report(
    timelines: list[Path] = typer.Argument(..., help="One or more timeline files."),
    as_json: bool = typer.Option(False, "--json", help="Print the gates as JSON."),
    spec: Path | None = typer.Option(
        None, "--spec", help="Gate on this PipelineSpec's `slo:` thresholds (e.g. "
        "end_to_end_p95_ms, cancel_fence_p95_ms); unset ones keep the profile's MVP bounds."),
    per_session: bool = typer.Option(
        False, "--per-session", help="Also check each session on its own (F-105: isolation "
        "under pooling): its longest pool wait and its own first-output/end-to-end p95 "
        "against the spec's `slo.session` bounds or the --session-* options; exit 1 naming "
        "every session that breaks one."),
    session_pool_wait: float | None = typer.Option(
        None, "--session-pool-wait-max-ms", min=0.0, help="Per session: the longest total "
        "wait of any one turn for shared pool slots (OR-02 pool_wait_ms), ms."),
    session_first_output: float | None = typer.Option(
        None, "--session-first-output-p95-ms", min=0.0,
        help="Per session: its own first-output p95 (gate 2), ms."),
    session_end_to_end: float | None = typer.Option(
        None, "--session-end-to-end-p95-ms", min=0.0,
        help="Per session: its own end-to-end p95 (gate 7), ms."),
) -> None:
    """The seven MVP gates with p50/p95/p99; exit 1 on a failing gate or without evidence.

    A malformed line is bad input (one line, exit 2); a timeline without an accepted
    turn exits 1: a release gate never passes on no evidence.
    """
    from rspp.cli._slo_sessions import session_bounds, session_rows, show_sessions

    overrides = {"pool_wait_max_ms": session_pool_wait,
                 "first_output_p95_ms": session_first_output,
                 "end_to_end_p95_ms": session_end_to_end}
    given = [name for name, v in overrides.items() if v is not None]
    if given and not per_session:
        raise fail(f"--session-{given[0].replace('_', '-')}: a per-session bound needs "
                   "--per-session")
    console = _console(stderr=as_json)
    thresholds = GATES
    slo = None
    if spec is not None:
        from rspp.errors import SpecError
        from rspp.spec import load_spec

        if not spec.is_file():
            raise fail(f"{spec}: --spec: file not found")
        try:
            slo = load_spec(spec, strict=True).slo
        except SpecError as exc:
            raise fail(f"{spec}: --spec: {exc}") from None
        if slo is not None:
            fields = msgspec.structs.asdict(slo)
            fields.pop("session", None)  # per-session bounds: --per-session
            thresholds = gates_with(fields)
    bounds = session_bounds(slo, overrides)
    sessions = None
    if per_session:
        result, sessions = evaluate_sessions(_lines(timelines, payloads=False), bounds,
                                             thresholds)
    else:
        result = evaluate_gates(_lines(timelines, payloads=False), thresholds)
    if as_json:
        gates = [
            {"gate": g.gate, "name": g.name, "threshold": g.threshold, "count": g.count,
             "p50": g.p50, "p95": g.p95, "p99": g.p99, "value": g.value, "pass": g.passed,
             "status": g.status, "diagnostics": g.diagnostics}
            for g in result.gates
        ]
        doc: dict[str, object] = {"gates": gates, "accepted_turns": result.accepted_turns}
        if sessions is not None:
            doc["sessions"] = session_rows(sessions)
        typer.echo(json.dumps(doc, indent=2))
    else:
        table = Table(title="MVP quality gates")
        for column in ("gate", "name", "threshold", "count", "p50", "p95", "p99", "value",
                       "status"):
            table.add_column(column, no_wrap=column in ("name", "status"))
        colours = {"pass": "green", "fail": "bold red", "no_samples": "yellow"}
        for g in result.gates:
            table.add_row(str(g.gate), g.name, g.threshold, str(g.count), _fmt(g.p50),
                          _fmt(g.p95), _fmt(g.p99), _fmt(g.value),
                          f"[{colours[g.status]}]{g.status}[/]")
        console.print(table)
        for g in result.gates:
            for note in g.diagnostics[:5]:
                console.print(f"gate {g.gate}: {note}", highlight=False, markup=False)
    if sessions is not None:
        show_sessions(console, sessions, bounds, table=not as_json)
    if result.accepted_turns == 0:
        names = ", ".join(str(p) for p in timelines)
        raise fail(f"{names}: turn_open: no accepted turn in the timeline; a release gate needs "
                   "evidence - record a session with `rspp run --timeline`", code=1)
    if result.failed or (sessions is not None and not all(v.passed for v in sessions)):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach ``timeline`` and ``slo`` to the root app."""
    from rspp.cli import _timeline_errors, _timeline_verify, _timeline_view

    _timeline_view.register(timeline_app)
    _timeline_errors.register(timeline_app)
    _timeline_verify.register(timeline_app)
    app.add_typer(timeline_app, name="timeline")
    app.add_typer(slo_app, name="slo")
    guard_commands(app)
