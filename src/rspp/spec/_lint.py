"""``lint_text``: every problem of a spec, never raising for bad input (F-001, NF-015)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from rspp.spec._catalog import NodeTypeCatalog
from rspp.spec._compiler import analyse
from rspp.spec._issues import LintIssue
from rspp.spec._loader import check_text
from rspp.spec._providers_check import ProviderAdapterCatalog
from rspp.spec._subgraphs import SubgraphResolver


def lint_text(
    text: str,
    filename: str = "<string>",
    strict: bool = False,
    *,
    catalog: NodeTypeCatalog | None = None,
    subgraphs: SubgraphResolver | None = None,
    adapters: ProviderAdapterCatalog | None = None,
    as_of: date | None = None,
) -> list[LintIssue]:
    """Schema, graph and type problems of ``text``; in ``strict`` warnings become errors.

    ``adapters`` (e.g. ``rspp.providers.PROVIDER_CATALOG``) also checks adapter names.
    """
    spec, issues = check_text(text, filename, strict=strict)
    if spec is not None:
        _graph, more = analyse(spec, catalog=catalog, subgraphs=subgraphs, adapters=adapters,
                               as_of=as_of)
        issues = [*issues, *more]
    if strict:
        issues = [replace(i, severity="error") for i in issues]
    unique = list(dict.fromkeys(issues))
    return sorted(unique, key=lambda i: (i.file, i.line, i.col, i.path))
