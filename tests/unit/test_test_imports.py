"""Test modules reach shared helpers through conftest fixtures, not ``import tests...``.

CI runs the suite with the ``pytest`` entry point, which does not put the repository root on
``sys.path`` (``python -m pytest`` does), so a runtime ``from tests.e2e.x import y`` passes
locally and fails collection in CI. Imports under ``if TYPE_CHECKING:`` are only read by
type checkers and stay allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def _runtime_tests_imports(source: str, filename: str) -> list[int]:
    """Lines of ``import tests...``/``from tests... import`` outside ``if TYPE_CHECKING:``."""
    tree = ast.parse(source, filename)
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                guarded.update(id(n) for n in ast.walk(inner))
    lines = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tests":
            lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == "tests" for a in node.names):
            lines.append(node.lineno)
    return lines


def test_no_test_module_imports_the_tests_package_at_run_time() -> None:
    offenders = [f"{path.relative_to(TESTS.parent)}:{line}"
                 for path in sorted(TESTS.rglob("*.py"))
                 for line in _runtime_tests_imports(path.read_text(), str(path))]
    assert offenders == [], f"import helpers through conftest fixtures instead: {offenders}"


def test_the_check_tells_a_runtime_import_from_a_type_checking_one() -> None:
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from tests.e2e.conftest import ServeProcess\n"
              "from tests.e2e._helpers import SPEC\n"
              "def f():\n    import tests.unit\n")
    assert _runtime_tests_imports(source, "x.py") == [4, 6]
