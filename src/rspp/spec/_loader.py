"""Parse/load a PipelineSpec from YAML or JSON text, keeping source positions."""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path

import msgspec
import msgspec.inspect as mi

from rspp.spec._check import Checker
from rspp.spec._issues import LintIssue, SpecInvalid
from rspp.spec._model import PipelineSpec
from rspp.spec._yaml import MAX_SPEC_BYTES, SourceMap, load_document

_SOURCES: dict[int, tuple[weakref.ref[PipelineSpec], SourceMap]] = {}
_SPEC_TYPE = mi.type_info(PipelineSpec)


def _remember(spec: PipelineSpec, source: SourceMap) -> None:
    key = id(spec)
    _SOURCES[key] = (weakref.ref(spec, lambda _ref: _SOURCES.pop(key, None)), source)


def source_of(spec: PipelineSpec) -> SourceMap:
    """The source map a spec was parsed from (an empty one for specs built in code)."""
    entry = _SOURCES.get(id(spec))
    if entry is not None and entry[0]() is spec:
        return entry[1]
    return SourceMap("<spec>")


def check_text(
    text: str, filename: str, *, strict: bool
) -> tuple[PipelineSpec | None, list[LintIssue]]:
    """Schema-check ``text``; return the decoded spec (None on errors) and all issues."""
    tree, source, issues = load_document(text, filename)
    if issues:
        return None, issues
    if not isinstance(tree, dict):
        hint = "a spec is a mapping with at least `name:` and `version:`"
        return None, [source.issue((), "the document is not a mapping", hint)]
    checker = Checker(source, strict=strict)
    cleaned = checker.check(tree, _SPEC_TYPE, ())
    issues = checker.issues
    if checker.blocking:
        return None, issues
    try:
        spec = msgspec.convert(cleaned, PipelineSpec)
    except msgspec.ValidationError as exc:
        return None, [*issues, source.issue((), str(exc), "fix the value named in the message")]
    _remember(spec, source)
    return spec, issues


def parse_spec_text(text: str, filename: str = "<string>", *, strict: bool = False) -> PipelineSpec:
    """Decode a spec.

    Unknown fields are ignored by default (use :func:`lint_text` to see them); with
    ``strict=True`` they raise :class:`SpecInvalid` naming the field (publishing uses
    this so a typo such as ``turn_budget_ms`` is never silently dropped).
    """
    spec, issues = check_text(text, filename, strict=strict)
    errors = tuple(i for i in issues if i.severity == "error")
    if spec is None or errors:
        raise SpecInvalid(errors)
    return spec


def read_spec_source(path: str | Path) -> str:
    """The text of a spec (or layers) file; :class:`SpecInvalid` when it cannot be one.

    The size is checked before reading (:data:`~rspp.spec.MAX_SPEC_BYTES`); the bytes
    must be UTF-8 (the issue names the line and column of the first bad byte).
    """
    file = Path(path)
    name = str(file)
    try:
        size = file.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecInvalid((LintIssue(
                name, 1, 1, "<root>", f"the file has {size} bytes, over the limit of "
                f"{MAX_SPEC_BYTES}", "split the spec into subgraphs"),))
        data = file.read_bytes()
    except OSError as exc:
        raise SpecInvalid(
            (LintIssue(name, 1, 1, "<root>", f"cannot read file: {exc.strerror or exc}",
                       "check the path and its permissions"),)
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecInvalid((LintIssue(
            name, line, col, "<root>", f"byte {data[exc.start]:#04x} is not UTF-8",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"),)) from None


def load_spec(path: str | Path, *, strict: bool = False) -> PipelineSpec:
    """Read and decode the spec file at ``path`` (``strict``: see :func:`parse_spec_text`)."""
    return parse_spec_text(read_spec_source(path), str(path), strict=strict)


def spec_hash(spec: PipelineSpec) -> str:
    """Publish hash: SHA-256 of the canonical JSON of the whole normalised spec.

    Key order, whitespace and YAML comments never change it; metadata does (it is part
    of the published artifact). See ``GraphDefinition.graph_hash`` for the
    execution-only hash.
    """
    canonical = msgspec.json.encode(msgspec.to_builtins(spec), order="sorted")
    return hashlib.sha256(canonical).hexdigest()
