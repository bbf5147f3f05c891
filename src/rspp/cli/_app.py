"""Root Typer app; each command group lives in its own module and registers itself.

A command's module is imported only when that command runs (or when help lists it):
``rspp cp list`` does not pay for the replay engine, the timeline tools or the server.
Every ``rspp`` child process starts here, so start-up cost multiplies.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from rspp.cli._errors import echo_error, guard_commands

#: Top-level command -> the modules whose ``register(app)`` defines it, in ``--help`` order
#: (commands first, then groups, as Typer lists them). A module listed for several names
#: defines all of them; ``rspp cp`` also loads the modules that add sub-groups to ``cp``.
_CP = ("_cp", "_cp_serve", "_cp_pipelines", "_cp_fleet", "_cp_change", "_cp_dr",
       "_cp_placement", "_cp_session", "_cp_slo")
_LAZY: dict[str, tuple[str, ...]] = {
    "lint": ("_spec",),
    "validate": ("_spec",),
    "docs": ("_spec",),
    "say": ("_audio",),
    "run": ("_run",),
    "replay": ("_replay",),
    "talk": ("_talk",),
    "serve": ("_serve",),
    "contracts": ("_contracts",),
    "spec": ("_spec",),
    "cp": _CP,
    "timeline": ("_observe",),
    "slo": ("_observe",),
    "node": ("_node",),
    "conformance": ("_conformance",),
}


@functools.cache
def _commands_of(modules: tuple[str, ...]) -> dict[str, Any]:
    """The click commands ``modules`` register, guarded; built once per process."""
    staging = typer.Typer()
    for name in modules:
        importlib.import_module(f"rspp.cli.{name}").register(staging)
    guard_commands(staging)
    return dict(typer.main.get_group(staging).commands)


class _LazyGroup(TyperGroup):
    """The root group: lists every command, imports a command's module on first lookup."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in _LAZY if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        modules = _LAZY.get(cmd_name)
        if cmd_name not in self.commands and modules is not None:
            self.commands[cmd_name] = _commands_of(modules)[cmd_name]
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and args[0] not in _LAZY:
            for name in self.list_commands(ctx):  # an unknown name: suggest from all of them
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="rspp",
    help="RSPP, the Realtime Speech Pipeline Platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_LazyGroup,
)


@app.callback()
def _root() -> None:
    # A callback keeps the root a group although only ``version`` is registered eagerly.
    pass


@app.command("version")
def version() -> None:
    """Print the installed RSPP version."""
    from rspp import __version__

    typer.echo(__version__)


guard_commands(app)


def main() -> None:
    """Console-script entry point.

    Commands turn bad input into one line (see :mod:`rspp.cli._errors`); an
    unexpected exception is a bug, reported here as one line with exit 70
    (``RSPP_TRACEBACK=1`` re-raises it with the traceback).
    """
    try:
        app()
    except Exception as exc:
        if os.environ.get("RSPP_TRACEBACK"):
            raise
        echo_error(f"rspp: internal error: {type(exc).__name__}: {exc} (this is a bug; "
                   "RSPP_TRACEBACK=1 shows the traceback)")
        sys.exit(70)
