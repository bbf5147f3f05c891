"""``rspp cp session ...``: move a live session, rotate or revoke its lease (CP-07, CP-08).

A session whose runtime holds its lease live is handed off in two phases: the runtime
learns it at its next renewal, fences its output, ends the running turn
``deauthorized_drain`` and releases the lease; only then does the epoch move. The
command answers once that happened (at the latest when the lease expires: a holder that
does not answer is rotated anyway; the control plane answers ``handoff_pending`` after
two minutes, the hand-off goes on). ``--force`` moves at once (the runtime is known to
be gone; fencing by epoch covers it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _print, cp_app

session_app = typer.Typer(help="Live sessions: migrate, rotate or revoke the lease.",
                          no_args_is_help=True)
cp_app.add_typer(session_app, name="session")

ForceOpt = typer.Option(False, "--force", help="At once, without waiting for the runtime "
                        "holding the lease (it is known to be gone).")


def _run(server: str, api_key: str | None, work: Callable[[Any], Awaitable[Any]]) -> None:
    """One hand-off through :class:`~rspp.controlplane.ControlPlaneClient`; a refusal
    prints ``error: CODE: MESSAGE`` and exits 1."""
    from rspp.controlplane import ControlPlaneClient, CPError

    async def go() -> Any:
        async with ControlPlaneClient(server, api_key) as client:
            return await work(client)

    try:
        result = asyncio.run(go())
    except CPError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        typer.echo(f"error: {exc.code}: {exc.message}{field}", err=True)
        raise typer.Exit(1) from None
    _print(msgspec.to_builtins(result))


@session_app.command("migrate")
def migrate(session: str = typer.Argument(..., help="Session id."),
            to: str = typer.Option(None, "--to", help="Target runtime (default: the best "
                                   "other healthy one)."),
            force: bool = ForceOpt, server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Move a live session to another runtime; its client reconnects there."""
    _run(server, api_key, lambda c: c.migrate(session, to, force=force))


@session_app.command("rotate")
def rotate(session: str = typer.Argument(..., help="Session id."), force: bool = ForceOpt,
           server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Rotate the session's lease to the next epoch (same runtime; the running turn ends)."""
    _run(server, api_key, lambda c: c.rotate_lease(session, force=force))


@session_app.command("revoke")
def revoke(session: str = typer.Argument(..., help="Session id."), force: bool = ForceOpt,
           server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Revoke the session's lease: no runtime may act for it; the session closes."""
    _run(server, api_key, lambda c: c.rotate_lease(session, revoke=True, force=force))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
