"""Root Typer app; each command group lives in its own module and registers itself."""

from __future__ import annotations

import typer

from rspp.cli import _audio, _contracts, _cp, _observe, _replay, _run, _spec, _talk

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


for _group in (_contracts, _spec, _cp, _observe, _audio, _run, _replay, _talk):
    _group.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
