"""Shared fixtures of the observability CLI tests: the registered `rspp` commands, invoked
in process with a wide, colourless terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from rspp.cli._observe import register

RunCli = Callable[..., Any]


@pytest.fixture
def run_cli() -> RunCli:
    """``run_cli(*args)``: the CLI's result; an exception other than an exit fails the test."""
    app = typer.Typer()
    register(app)

    def invoke(*args: str) -> Any:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "NO_COLOR": "1"})
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.output
        return result

    return invoke
