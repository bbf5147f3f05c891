"""``rspp cp placement set | show | clear TENANT``: a tenant's placement policy.

Data residency (F-168, NF-034): the regions a tenant's sessions may be processed and
their artifacts stored in (``--region``, repeatable, with a ``--jurisdiction`` label for
the audit); and how its in-flight sessions fail over in a region incident
(``--failover-mode migrate|drain``, F-113). Setting and clearing need an admin key and
are audited; see docs/residency.md.
"""

from __future__ import annotations

import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _call, _print, cp_app

__all__ = ["register"]

placement_app = typer.Typer(help="Tenant placement policy: data residency and failover mode "
                            "(F-168, F-113).", no_args_is_help=True)
cp_app.add_typer(placement_app, name="placement")


@placement_app.command("set")
def placement_set(
    tenant: str = typer.Argument(..., help="Tenant id."),
    region: list[str] = typer.Option(
        [], "--region", help="A region the tenant's sessions and artifacts may use "
        "(repeatable; as runtimes register it). Without any: no residency constraint."),
    jurisdiction: str = typer.Option(None, "--jurisdiction",
                                     help="The jurisdiction the regions stand for (EU)."),
    failover_mode: str = typer.Option(
        None, "--failover-mode", help="In a region incident: migrate the tenant's in-flight "
        "sessions to another region, or drain them where they are (default: the control "
        "plane's --failover-mode)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Replace the tenant's placement policy (admin)."""
    body: dict[str, object] = {}
    if region:
        body["regions"] = region
    if jurisdiction is not None:
        body["jurisdiction"] = jurisdiction
    if failover_mode is not None:
        body["failover_mode"] = failover_mode
    _print(_call(server, api_key, lambda c: c.request(
        "PUT", f"/v1/tenants/{tenant}/placement", json=body)))


@placement_app.command("show")
def placement_show(tenant: str = typer.Argument(..., help="Tenant id."),
                   server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """The tenant's placement policy (null fields: not set)."""
    _print(_call(server, api_key, lambda c: c.request("GET", f"/v1/tenants/{tenant}/placement")))


@placement_app.command("clear")
def placement_clear(tenant: str = typer.Argument(..., help="Tenant id."),
                    server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Remove the tenant's placement policy (admin): its sessions run anywhere again."""
    _print(_call(server, api_key, lambda c: c.request(
        "DELETE", f"/v1/tenants/{tenant}/placement")))


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
