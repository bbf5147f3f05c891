"""Every command and sub-command of the `rspp` CLI answers `--help` (exit 0, a usage line).

The command tree is read from the CLI itself, so a new command is covered without a change
here. A help text that Rich cannot render (markup such as ``[/X]`` in an option's help)
crashed `rspp serve --help` before this test existed.
"""

from __future__ import annotations

from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from rspp.cli._app import app


def _command_paths() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        paths.append(path)
        if not hasattr(command, "list_commands"):  # a leaf (typer vendors its click)
            return
        ctx = typer.Context(command)  # the root loads each command's module on lookup
        for name in sorted(command.list_commands(ctx)):
            walk(command.get_command(ctx, name), (*path, name))

    walk(root, ())
    return paths


COMMAND_PATHS = _command_paths()


def test_the_cli_has_its_command_groups() -> None:
    names = {path[0] for path in COMMAND_PATHS if path}
    assert {"run", "serve", "talk", "replay", "cp", "slo", "lint"} <= names


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "rspp")
def test_every_command_answers_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "internal error" not in result.output
