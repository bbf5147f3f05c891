from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fixtures_dir() -> Path:
    return ROOT / "tests" / "fixtures" / "specs"


@pytest.fixture
def repo_root() -> Path:
    return ROOT
