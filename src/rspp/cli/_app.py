"""Root Typer app; each command group lives in its own module and registers itself."""

from __future__ import annotations

import os
import sys

import typer

from rspp.cli import (
    _audio,
    _contracts,
    _cp,
    _cp_change,
    _cp_dr,
    _cp_placement,
    _cp_session,
    _cp_slo,
    _node,
    _observe,
    _replay,
    _run,
    _serve,
    _spec,
    _talk,
)
from rspp.cli._errors import echo_error, guard_commands

app = typer.Typer(
    name="rspp",
    help="RSPP, the Realtime Speech Pipeline Platform.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("version")
def version() -> None:
    """Print the installed RSPP version."""
    from rspp import __version__

    typer.echo(__version__)


for _group in (_contracts, _spec, _cp, _cp_change, _cp_dr, _cp_placement, _cp_session, _cp_slo,
               _observe, _audio, _run, _replay, _talk, _serve, _node):
    _group.register(app)
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
