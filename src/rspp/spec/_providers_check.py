"""Lint of ``providers:``: every adapter name and option checked against an injected catalog.

The spec layer knows no adapters (``rspp.providers`` sits above it); the CLI and the
runner pass ``rspp.providers.PROVIDER_CATALOG``, any object with this protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from rspp.spec._issues import LintIssue
from rspp.spec._loader import source_of
from rspp.spec._model import PipelineSpec

__all__ = ["ProviderAdapterCatalog", "check_providers"]

_MODALITIES = ("stt", "llm", "tts")


class ProviderAdapterCatalog(Protocol):
    """Adapter names per modality and the problems of one adapter's config."""

    def adapter_names(self, modality: str) -> tuple[str, ...]: ...

    def problems(
        self, modality: str, name: str, config: Mapping[str, object]
    ) -> list[tuple[str, str, str]]: ...


def check_providers(spec: PipelineSpec, catalog: ProviderAdapterCatalog) -> list[LintIssue]:
    """Unknown adapter names (primary, fallbacks, ``config.adapter``) and bad options."""
    if spec.providers is None:
        return []
    src = source_of(spec)
    issues: list[LintIssue] = []
    for modality in _MODALITIES:
        chosen = getattr(spec.providers, modality)
        if chosen is None:
            continue
        base = ("providers", modality)
        adapter = chosen.config.get("adapter")
        where: tuple[str | int, ...] = (*base, "primary")
        name = chosen.primary
        if isinstance(adapter, str):
            name, where = adapter, (*base, "config", "adapter")
        for key, message, hint in catalog.problems(modality, name, chosen.config):
            path: tuple[str | int, ...] = (*base, "config", key) if key else where
            issues.append(src.issue(path, message, hint))
        for i, fallback in enumerate(chosen.fallbacks):
            for _key, message, hint in catalog.problems(modality, fallback, {}):
                issues.append(src.issue((*base, "fallbacks", i), message, hint))
    return issues
