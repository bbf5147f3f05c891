"""Lint issues and the :class:`SpecInvalid` error that carries them.

``SpecInvalid`` sits under :class:`rspp.errors.SpecError` in the error tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rspp.errors import SpecError

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class LintIssue:
    """One problem in a spec: where it is, what is wrong and how to fix it."""

    file: str
    line: int
    col: int
    path: str
    message: str
    hint: str
    severity: Severity = "error"

    def format(self) -> str:
        """Render as ``FILE:LINE:COL: <path>: <message>`` plus the hint."""
        level = "" if self.severity == "error" else "warning: "
        return (
            f"{self.file}:{self.line}:{self.col}: {level}{self.path}: {self.message}"
            f"\n    hint: {self.hint}"
        )


class SpecInvalid(SpecError):
    """A PipelineSpec failed validation or compilation; ``issues`` lists every problem."""

    def __init__(self, issues: tuple[LintIssue, ...] | list[LintIssue]) -> None:
        self.issues: tuple[LintIssue, ...] = tuple(issues)
        first = self.issues[0].format() if self.issues else "invalid spec"
        more = f" (+{len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(first + more)
