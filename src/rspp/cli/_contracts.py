"""``rspp contracts``: validate records, print our JSON Schema, classify schema changes."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import typer

from rspp.cli._errors import guard_commands
from rspp.contracts import (
    EVIDENCE_KIND,
    KINDS,
    ValidationIssue,
    all_schemas,
    capability_issues,
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


MAX_JSON_BYTES = 64 << 20
"""Largest single JSON document (``.json``) validated; timelines (``.jsonl``) stream."""

Located = tuple[int, ValidationIssue]
"""An issue with its 1-based line in the file (0: the file as a whole)."""


Check = Callable[[str, object], list[ValidationIssue]]
"""How a record of a kind is checked: this installation's :func:`validate`, or a registry
document's :class:`RegistryValidator` (``--schema``)."""


def _check_record(kind: str | None, data: object, prefix: str = "",
                  check: Check = validate) -> list[ValidationIssue]:
    chosen = kind or infer_kind(data)
    issues = check(chosen, data)
    if chosen == "resolved_turn_plan" and not issues:  # its frozen capabilities (F-161)
        issues = capability_issues(data)
    if prefix:
        issues = [ValidationIssue(f"{prefix}.{i.path}", i.message) for i in issues]
    return issues


def _evidence_issues(record: object) -> list[ValidationIssue]:
    from rspp.observability import missing_evidence_fields

    if not isinstance(record, dict):
        return [ValidationIssue("record", "OR-02 evidence must be a JSON object")]
    return [_evidence_issue(problem) for problem in missing_evidence_fields(record)]


_FIELD_FIRST = re.compile(r"^(?P<field>[A-Za-z_][\w.]*): (?P<message>.+)$", re.S)
_MSGSPEC_AT = re.compile(r" - at `\$\.?(?P<field>[^`]*)`$")


def _evidence_issue(problem: str) -> ValidationIssue:
    """``field: message`` or a msgspec ``message - at `$.field``` as a record issue."""
    found = _FIELD_FIRST.match(problem)
    if found is not None:
        return ValidationIssue(f"record.{found['field']}", found["message"])
    at = _MSGSPEC_AT.search(problem)
    if at is not None:
        return ValidationIssue(f"record.{at['field']}".rstrip("."), problem[: at.start()])
    return ValidationIssue("record", problem)


def _check_jsonl(kind: str | None, path: Path, check: Check = validate) -> Iterator[Located]:
    """Issues of every line of a JSON Lines timeline, read as a stream."""
    from rspp.observability import TimelineFormatError, envelope_problem, iter_values

    empty = True
    for number, data in iter_values(path):
        empty = False
        if isinstance(data, TimelineFormatError):
            field = "<file>" if number == 0 else "<line>"
            yield number, ValidationIssue(field, data.message)
            continue
        if isinstance(data, dict) and data.get("kind") == EVIDENCE_KIND:
            yield from ((number, i) for i in _evidence_issues(data.get("record")))
            continue
        if check is not validate:  # a registry document decides, not this installation
            line_kind = data.get("kind") if isinstance(data, dict) else None
            record = data.get("record") if isinstance(data, dict) else data
            found = _check_record(str(line_kind), record, "record", check)
            yield from ((number, i) for i in found)
            continue
        entry, found = parse_entry(data)
        if entry is not None and kind is not None and entry.kind != kind:
            found = [ValidationIssue("kind", f"expected {kind!r}, got {entry.kind!r}"), *found]
        if not found and isinstance(data, dict) and isinstance(data.get("record"), dict):
            problem = envelope_problem(data["record"])  # e.g. integers beyond 64 bits
            found = [ValidationIssue(f"record.{problem[0]}", problem[1])] if problem else []
            if not found and entry is not None and entry.kind == "resolved_turn_plan":
                found = [ValidationIssue(f"record.{i.path}", i.message)
                         for i in capability_issues(data["record"])]  # F-161
        yield from ((number, i) for i in found)
    if empty:
        yield 0, ValidationIssue("<file>", "the file is empty; there is nothing to validate")


def _check_json(kind: str | None, path: Path, check: Check = validate) -> Iterator[Located]:
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            yield 0, ValidationIssue("<file>", f"{size} bytes is over the {MAX_JSON_BYTES}-byte "
                                     "limit of a .json document; write records as .jsonl")
            return
        raw = path.read_bytes()
    except OSError as exc:
        yield 0, ValidationIssue("<file>", f"cannot read file: {exc.strerror or exc}")
        return
    if not raw.strip():
        yield 0, ValidationIssue("<file>", "the file is empty; there is nothing to validate")
        return
    try:
        data: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        yield 0, ValidationIssue("<file>", f"malformed JSON: {exc}")
        return
    except RecursionError:
        yield 0, ValidationIssue("<file>", "malformed JSON: nested too deeply")
        return
    if isinstance(data, list):
        if not data:
            yield 0, ValidationIssue("<file>", "an empty list holds no record to validate")
        for index, item in enumerate(data):
            yield from ((0, i) for i in _check_record(kind, item, str(index), check))
        return
    yield from ((0, i) for i in _check_record(kind, data, check=check))


def _check_file(kind: str | None, path: Path, check: Check = validate) -> Iterator[Located]:
    if path.suffix == ".jsonl":
        return _check_jsonl(kind, path, check)
    return _check_json(kind, path, check)


def _registry_check(schema: Path | None) -> Check:
    """``validate``, or the validator of a saved registry document (exit 2 when unreadable)."""
    if schema is None:
        return validate
    from rspp.contracts import RegistryValidator, load_schema_document
    from rspp.errors import ContractError

    try:
        return RegistryValidator(load_schema_document(schema.read_bytes())).validate
    except OSError as exc:
        typer.echo(f"{schema}: cannot read file: {exc.strerror or exc}", err=True)
    except ContractError as exc:
        typer.echo(f"{schema}: {exc}", err=True)
    raise typer.Exit(2)


def _verdict(path: Path, located: Located, more: int = 0) -> str:
    line, issue = located
    where = f"{path}:{line}" if line else str(path)
    tail = f" (+{more} more)" if more else ""
    return f"{where}: invalid: {issue.path}: {issue.message}{tail}"


@contracts_app.command("validate")
def validate_command(
    files: list[Path] = typer.Argument(..., help="JSON records (.json) or timelines (.jsonl)."),
    kind: str | None = typer.Option(
        None, "--kind", callback=_kind_check, help=f"One of: {', '.join(KINDS)}. Default: inferred."
    ),
    show_all: bool = typer.Option(False, "--all", help="Print every issue, one per line."),
    schema: Path | None = typer.Option(
        None, "--schema", help="Validate with this schema registry document (saved from "
        "`rspp contracts schema --server URL`) instead of this installation's schemas."),
) -> None:
    """Validate records; print ``FILE: valid`` or ``FILE[:LINE]: invalid: PATH: MESSAGE``.

    Timelines are streamed (memory does not grow with the file); an empty file is invalid.
    """
    check = _registry_check(schema)
    failed = False
    for path in files:
        first: Located | None = None
        count = 0
        for located in _check_file(kind, path, check):
            count += 1
            if show_all:
                typer.echo(_verdict(path, located))
            elif first is None:
                first = located
        if first is not None:
            typer.echo(_verdict(path, first, count - 1))
        if count == 0:
            typer.echo(f"{path}: valid")
        failed = failed or count > 0
    raise typer.Exit(1 if failed else 0)


@contracts_app.command("schema")
def schema_command(
    kind: str | None = typer.Argument(None, help=f"One of: {', '.join(KINDS)}, or `ws` (the "
                                      "WebSocket protocol); default: all."),
    server: str | None = typer.Option(
        None, "--server", envvar="RSPP_SERVER",
        help="Ask this control plane's schema registry instead of this installation."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RSPP_API_KEY",
                                       help="Bearer API key (with --server)."),
    schema_version: str | None = typer.Option(
        None, "--schema-version", help="With --server: the version to fetch (default: the "
        "registry's current one)."),
) -> None:
    """Print the JSON Schema of our contract types (one kind, or all kinds; `ws`: protocol).

    With --server: the registry's document of one schema_version (documented types,
    the validation schema and each kind's pointers), for `validate --schema`.
    """
    if server is not None:
        typer.echo(json.dumps(_fetch_schema(server, api_key, schema_version, kind), indent=2,
                              sort_keys=True))
        return
    if kind == "ws":
        from rspp.transports import ws_schema

        typer.echo(json.dumps(ws_schema(), indent=2, sort_keys=True))
        return
    _kind_check(kind)
    document = json_schema(kind) if kind else all_schemas()
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _fetch_schema(server: str, api_key: str | None, version: str | None,
                  kind: str | None) -> Any:
    from rspp.cli._cp import _call

    _kind_check(kind)

    def work(client: Any) -> Any:
        chosen = version or client.request("GET", "/v1/schemas")["current"]
        return client.request("GET", f"/v1/schemas/{chosen}" + (f"/{kind}" if kind else ""))

    return _call(server, api_key, work)


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
    guard_commands(app)
