"""``rspp cp ...``: the control-plane command group, its sub-groups and shared options.

The commands live in modules named for what they do, each joining ``cp_app`` when it is
imported; the root CLI (:mod:`rspp.cli._app`) imports them when ``rspp cp`` runs:
:mod:`rspp.cli._cp_serve` (run the control plane), :mod:`rspp.cli._cp_pipelines`
(publish, roll out, route), :mod:`rspp.cli._cp_fleet` (tokens, keys, configs, runtimes,
signing keys, regions) and the ``_cp_*`` sub-group modules.
"""

from __future__ import annotations

import typer

from rspp.cli._cp_client import (
    DEFAULT_SERVER,
    KeyOpt,
    ServerOpt,
    _call,
    _Client,
    _CliError,
    _print,
    client_tls_from_env,
)

__all__ = [
    "DEFAULT_SERVER", "KeyOpt", "ServerOpt", "_CliError", "_Client", "_call", "_print",
    "client_tls_from_env", "config_app", "cp_app", "keys_app", "kms_app", "region_app",
    "runtime_app", "signing_app", "token_app",
]

cp_app = typer.Typer(
    help="Control plane: registry, rollouts, routes, tokens, audit.", no_args_is_help=True
)
token_app = typer.Typer(help="Session tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)
runtime_app = typer.Typer(help="Runtime instances in the routing view.", no_args_is_help=True)
config_app = typer.Typer(help="Versioned configs: policy, admission, provider_config.",
                         no_args_is_help=True)
cp_app.add_typer(token_app, name="token")
cp_app.add_typer(keys_app, name="keys")
cp_app.add_typer(runtime_app, name="runtime")
cp_app.add_typer(config_app, name="config")
signing_app = typer.Typer(help="Session-token signing keys: rotation and key age (F-169).",
                          no_args_is_help=True)
cp_app.add_typer(signing_app, name="signing-keys")
kms_app = typer.Typer(help="KMS-backed encryption keys: status, rotation, rewrap (F-169).",
                      no_args_is_help=True)
cp_app.add_typer(kms_app, name="kms")
region_app = typer.Typer(help="Regions: runtimes, room and incidents (F-110, F-112).",
                         no_args_is_help=True)
cp_app.add_typer(region_app, name="region")


def register(app: typer.Typer) -> None:
    """Attach ``rspp cp`` to the root app."""
    app.add_typer(cp_app, name="cp")
