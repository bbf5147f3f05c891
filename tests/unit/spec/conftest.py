from __future__ import annotations

from pathlib import Path

import pytest
import typer

from rspp.cli import _spec

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def fixtures_dir() -> Path:
    return ROOT / "tests" / "fixtures" / "specs"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def app() -> typer.Typer:
    """A root app with the authoring commands (``rspp lint``, ``spec``, ``docs``)."""
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """Test root."""

    _spec.register(root)
    return root
