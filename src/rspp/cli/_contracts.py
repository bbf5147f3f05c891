"""``rspp contracts``: validate records, print our JSON Schema, classify schema changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from rspp.contracts import (
    EVIDENCE_KIND,
    KINDS,
    ValidationIssue,
    all_schemas,
    compare_schemas,
    infer_kind,
    json_schema,
    parse_entry,
    validate,
)

contracts_app = typer.Typer(
    name="contracts",
    help="Wire contracts: validate records, export JSON Schema, check schema compatibility.",
    no_args_is_help=True,
)


def _kind_check(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"{kind!r} is not a contract kind; use one of: {', '.join(KINDS)}")
    return kind


def _one_line(issues: list[ValidationIssue]) -> str:
    first = issues[0]
    more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
    return f"{first.path}: {first.message}{more}"


def _check_record(kind: str | None, data: object, prefix: str = "") -> list[ValidationIssue]:
    chosen = kind or infer_kind(data)
    issues = validate(chosen, data)
    if prefix:
        issues = [ValidationIssue(f"{prefix}.{i.path}", i.message) for i in issues]
    return issues


def _evidence_issues(where: str, record: object) -> list[ValidationIssue]:
    from rspp.observability import missing_evidence_fields

    if not isinstance(record, dict):
        return [ValidationIssue(f"{where}.record", "OR-02 evidence must be a JSON object")]
    return [
        ValidationIssue(f"{where}.record.{problem.partition(':')[0]}", problem.partition(': ')[2])
        for problem in missing_evidence_fields(record)
    ]


def _check_jsonl(kind: str | None, text: str) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"malformed JSON: {exc.msg} at column {exc.colno}"
            issues.append(ValidationIssue(where, reason))
            continue
        if isinstance(data, dict) and data.get("kind") == EVIDENCE_KIND:
            issues.extend(_evidence_issues(where, data.get("record")))
            continue
        entry, found = parse_entry(data)
        if entry is not None and kind is not None and entry.kind != kind:
            found = [ValidationIssue("kind", f"expected {kind!r}, got {entry.kind!r}"), *found]
        issues.extend(ValidationIssue(f"{where}.{i.path}", i.message) for i in found)
    return issues


def _check_file(kind: str | None, path: Path) -> list[ValidationIssue]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [ValidationIssue("<file>", f"cannot read file: {exc}")]
    if path.suffix == ".jsonl":
        return _check_jsonl(kind, text)
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        return [ValidationIssue("<file>", reason)]
    if isinstance(data, list):
        issues: list[ValidationIssue] = []
        for index, item in enumerate(data):
            issues.extend(_check_record(kind, item, prefix=str(index)))
        return issues
    return _check_record(kind, data)


@contracts_app.command("validate")
def validate_command(
    files: list[Path] = typer.Argument(..., help="JSON records (.json) or timelines (.jsonl)."),
    kind: str | None = typer.Option(
        None, "--kind", callback=_kind_check, help=f"One of: {', '.join(KINDS)}. Default: inferred."
    ),
    show_all: bool = typer.Option(False, "--all", help="Print every issue, one per line."),
) -> None:
    """Validate records; print ``FILE: valid`` or ``FILE: invalid: PATH: MESSAGE`` per file."""
    failed = False
    for path in files:
        issues = _check_file(kind, path)
        if not issues:
            typer.echo(f"{path}: valid")
            continue
        failed = True
        if show_all:
            for issue in issues:
                typer.echo(f"{path}: invalid: {issue.path}: {issue.message}")
        else:
            typer.echo(f"{path}: invalid: {_one_line(issues)}")
    raise typer.Exit(1 if failed else 0)


@contracts_app.command("schema")
def schema_command(
    kind: str | None = typer.Argument(None, help=f"One of: {', '.join(KINDS)}, or `ws` (the "
                                      "WebSocket protocol); default: all."),
) -> None:
    """Print the JSON Schema of our contract types (one kind, or all kinds; `ws`: protocol)."""
    if kind == "ws":
        from rspp.transports import ws_schema

        typer.echo(json.dumps(ws_schema(), indent=2, sort_keys=True))
        return
    _kind_check(kind)
    document = json_schema(kind) if kind else all_schemas()
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _load_schema(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"{path}: cannot read file: {exc}", err=True)
        raise typer.Exit(2) from exc
    except json.JSONDecodeError as exc:
        typer.echo(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno}", err=True)
        raise typer.Exit(2) from exc
    if not isinstance(loaded, dict):
        typer.echo(f"{path}: a JSON Schema document must be an object", err=True)
        raise typer.Exit(2)
    return loaded


@contracts_app.command("compat")
def compat_command(
    old: Path = typer.Argument(..., help="The published schema."),
    new: Path = typer.Argument(..., help="The proposed schema."),
) -> None:
    """Classify OLD -> NEW as additive or breaking; exit 1 when breaking (CI gate).

    A breaking change passes only when NEW's top-level ``version`` bumps the major.
    """
    report = compare_schemas(_load_schema(old), _load_schema(new))
    for change in report.changes:
        typer.echo(f"{change.kind}: {change.path}: {change.message}")
    verdict = report.verdict
    if verdict == "breaking" and report.major_bumped:
        typer.echo(
            f"breaking (allowed: major version bump {report.old_version} -> {report.new_version})"
        )
        return
    if verdict == "breaking":
        typer.echo(
            f"breaking: {len(report.breaking)} breaking change(s); restore compatibility "
            f"or bump the schema major version (version {report.old_version or 'unset'} -> "
            f"{report.new_version or 'unset'})"
        )
        raise typer.Exit(1)
    typer.echo(verdict)


def register(app: typer.Typer) -> None:
    """Attach ``rspp contracts`` to the root app."""
    app.add_typer(contracts_app, name="contracts")
