"""docs/testing.md's example of the public test kit runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def test_the_test_kit_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/testing.md: one runnable python example"
    namespace: dict[str, object] = {"__name__": "testing_docs_example"}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    assert "Shout" in namespace
