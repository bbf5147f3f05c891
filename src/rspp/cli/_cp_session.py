"""``rspp cp session ...``: move a live session, rotate or revoke its lease (CP-07, CP-08).

A session whose runtime holds its lease live is handed off in two phases: the runtime
learns it at its next renewal, fences its output, ends the running turn
``deauthorized_drain`` and releases the lease; only then does the epoch move. The
command answers once that happened (at the latest when the lease expires: a holder that
does not answer is rotated anyway). ``--force`` moves at once (the runtime is known to
be gone; fencing by epoch covers it).
"""

from __future__ import annotations

import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _call, _Client, _print, cp_app

session_app = typer.Typer(help="Live sessions: migrate, rotate or revoke the lease.",
                          no_args_is_help=True)
cp_app.add_typer(session_app, name="session")

#: a hand-off answers when the holder released the lease, at the latest at its expiry
#: (the control plane waits up to _WAIT_MS, then answers 409 handoff_pending)
_WAIT_MS = 120_000
_HANDOFF_TIMEOUT_S = _WAIT_MS / 1000 + 10

ForceOpt = typer.Option(False, "--force", help="At once, without waiting for the runtime "
                        "holding the lease (it is known to be gone).")


def _post(server: str, api_key: str | None, path: str, body: object | None,
          params: dict[str, str] | None = None) -> None:
    def work(c: _Client) -> object:
        c.timeout(_HANDOFF_TIMEOUT_S)
        return c.request("POST", path, json=body, params=params)

    _print(_call(server, api_key, work))


def _query(force: bool) -> dict[str, str]:
    return {"wait_ms": str(_WAIT_MS), **({"force": "true"} if force else {})}


@session_app.command("migrate")
def migrate(session: str = typer.Argument(..., help="Session id."),
            to: str = typer.Option(None, "--to", help="Target runtime (default: the best "
                                   "other healthy one)."),
            force: bool = ForceOpt, server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Move a live session to another runtime; its client reconnects there."""
    _post(server, api_key, f"/v1/sessions/{session}/migrate",
          {"target": to, "force": force, "wait_ms": _WAIT_MS})


@session_app.command("rotate")
def rotate(session: str = typer.Argument(..., help="Session id."), force: bool = ForceOpt,
           server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Rotate the session's lease to the next epoch (same runtime; the running turn ends)."""
    _post(server, api_key, f"/v1/leases/{session}/rotate", None, _query(force))


@session_app.command("revoke")
def revoke(session: str = typer.Argument(..., help="Session id."), force: bool = ForceOpt,
           server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Revoke the session's lease: no runtime may act for it; the session closes."""
    _post(server, api_key, f"/v1/leases/{session}/revoke", None, _query(force))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
