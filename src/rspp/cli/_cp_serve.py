"""``rspp cp migrate`` and ``rspp cp serve``: run the control plane (database schema,
HTTP API, TLS, token signing keys)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from rspp.cli._cp import cp_app
from rspp.cli._kms_option import VAULT_ADDR, VAULT_TOKEN_FILE, vault_for


@cp_app.command("migrate")
def migrate(
    db: str = typer.Option(
        None, "--db", envvar="RSPP_DB", help="Database URL (default: ./rspp-controlplane.db)."
    ),
    db_schema: str = typer.Option(
        None, "--db-schema", help="PostgreSQL schema to use (default: the search_path)."
    ),
) -> None:
    """Bring the control-plane database schema up to date (Alembic) and exit."""
    from rspp.controlplane import CPError, Store, default_sqlite_url

    async def run() -> None:
        store = await Store.open(db or default_sqlite_url(), schema=db_schema, migrate=True)
        await store.close()

    try:
        asyncio.run(run())
    except CPError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo("control-plane database schema is up to date")


@cp_app.command("serve")
def serve(
    db: str = typer.Option(
        None,
        "--db",
        envvar="RSPP_DB",
        help="Database URL or SQLite file path (default: ./rspp-controlplane.db).",
    ),
    db_schema: str = typer.Option(
        None, "--db-schema", help="PostgreSQL schema to use (default: the search_path)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", envvar="RSPP_CP_HOST"),
    port: int = typer.Option(8700, "--port", envvar="RSPP_CP_PORT"),
    admin_key: str = typer.Option(
        None, "--admin-key", envvar="RSPP_ADMIN_KEY", help="Bootstrap admin key."
    ),
    token_secret: str = typer.Option(
        None, "--token-secret", envvar="RSPP_TOKEN_SECRET", help="HS256 secret (>= 32 chars)."
    ),
    token_key_file: Path = typer.Option(
        None, "--token-key-file", help="Ed25519 private key PEM (created if missing)."
    ),
    token_key_dir: Path = typer.Option(
        None, "--token-key-dir", envvar="RSPP_TOKEN_KEY_DIR",
        help="Directory of generated signing keys (shared by the replicas): `rspp cp "
        "signing-keys rotate` without --key-ref generates the next key there, and keys are "
        "rotated automatically before --token-key-max-age-s.",
    ),
    token_key_max_age_s: int = typer.Option(
        7_776_000, "--token-key-max-age-s", min=2, envvar="RSPP_TOKEN_KEY_MAX_AGE_S",
        help="Maximum age of a token signing key (default 90 days): reported by `rspp cp "
        "signing-keys status`; with --token-key-dir the key is rotated at 75% of it.",
    ),
    state_key: str = typer.Option(
        None, "--state-key", envvar="RSPP_STATE_KEY",
        help="Seal session-state checkpoints at rest under this KMS key "
        "(vault-transit:NAME; F-169): rotate with `rspp cp kms rotate`."),
    timeline_key: str = typer.Option(
        None, "--timeline-key", envvar="RSPP_TIMELINE_KEY",
        help="The KMS key runtimes sign timelines with (vault-transit:NAME, ed25519): "
        "rotated by `rspp cp kms rotate --purpose timeline_signing`."),
    vault_addr: str = VAULT_ADDR,
    vault_token_file: Path = VAULT_TOKEN_FILE,
    max_body_bytes: int = typer.Option(
        1_048_576, "--max-body-bytes", min=1024, help="Request body limit (413 above it)."
    ),
    max_spec_bytes: int = typer.Option(
        262_144, "--max-spec-bytes", min=1024, help="Spec/module document limit on publish."
    ),
    heartbeat_timeout_ms: int = typer.Option(
        15_000, "--heartbeat-timeout-ms", min=100, envvar="RSPP_HEARTBEAT_TIMEOUT_MS",
        help="A runtime silent this long is marked unhealthy and its sessions fail over.",
    ),
    failover_mode: str = typer.Option(
        "migrate", "--failover-mode", envvar="RSPP_FAILOVER_MODE",
        help="migrate: move an unhealthy runtime's sessions (after their leases expire); "
        "drain: only stop placing sessions there.",
    ),
    failover_interval_ms: int = typer.Option(
        500, "--failover-interval-ms", min=20, help="How often the failover monitor sweeps."
    ),
    lease_ttl_ms: int = typer.Option(
        30_000, "--lease-ttl-ms", min=100, max=86_400_000, envvar="RSPP_CP_LEASE_TTL_MS",
        help="TTL of leases the control plane issues (route, migration) until the runtime "
        "acquires them with its own.",
    ),
    require_approval: bool = typer.Option(
        False, "--require-approval", envvar="RSPP_REQUIRE_APPROVAL",
        help="Rollouts, rollbacks and config activations apply only as changes another key "
        "approved (`rspp cp change`).",
    ),
    require_signed_changes: bool = typer.Option(
        False, "--require-signed-changes", envvar="RSPP_REQUIRE_SIGNED_CHANGES",
        help="Those changes apply only when their submission and approval are signed by "
        "registered Ed25519 keys (NF-037; `rspp cp change keygen`, `--signing-key`)."),
    tls_cert: Path = typer.Option(
        None, "--tls-cert", envvar="RSPP_TLS_CERT",
        help="Serve HTTPS with this certificate (PEM; reloaded when the file changes).",
    ),
    tls_key: Path = typer.Option(
        None, "--tls-key", envvar="RSPP_TLS_KEY", help="The --tls-cert's private key (PEM).",
    ),
    client_ca: Path = typer.Option(
        None, "--client-ca", envvar="RSPP_CLIENT_CA",
        help="Mutual TLS: refuse every caller without a certificate this CA bundle signed "
        "(runtimes, operators).",
    ),
    slo: Path = typer.Option(None, "--slo", envvar="RSPP_SLO", help="Availability SLO and "
                             "error-budget policy (YAML/JSON; `rspp cp slo status`)."),
) -> None:
    """Serve the control-plane HTTP API (SQLite by default, PostgreSQL with --db)."""
    import uvicorn

    from rspp.cli._slo_option import load_slo_option
    from rspp.controlplane import ControlPlane, ControlPlaneSettings, TokenKeys, create_app
    from rspp.controlplane._store import default_sqlite_url, normalise_url

    if not admin_key:
        typer.echo(
            "error: an admin key is required: pass --admin-key or set RSPP_ADMIN_KEY", err=True
        )
        raise typer.Exit(2)
    keys = _token_keys(token_secret, token_key_file, TokenKeys)
    vault = None
    for ref, flag in ((state_key, "--state-key"), (timeline_key, "--timeline-key")):
        vault = vault_for(ref, flag, vault_addr, vault_token_file) or vault
    settings = ControlPlaneSettings(
        db_url=normalise_url(db) if db else default_sqlite_url(),
        db_schema=db_schema,
        admin_key=admin_key,
        token_keys=keys,
        max_body_bytes=max_body_bytes,
        max_spec_bytes=max_spec_bytes,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
        failover_mode=failover_mode,
        failover_interval_ms=failover_interval_ms,
        lease_ttl_ms=lease_ttl_ms,
        require_approval=require_approval, require_signed_changes=require_signed_changes,
        slo=load_slo_option(slo),
        token_key_ref=f"file:{token_key_file.resolve()}" if token_key_file and not token_secret
        else None,
        token_key_dir=str(token_key_dir) if token_key_dir else None,
        token_key_max_age_s=token_key_max_age_s,
        state_key_ref=state_key, timeline_key_ref=timeline_key, vault=vault,
    )
    if failover_mode not in ("migrate", "drain"):
        typer.echo("error: --failover-mode must be migrate or drain", err=True)
        raise typer.Exit(2)
    tls = _server_tls(tls_cert, tls_key, client_ca)
    scheme = "https" if tls is not None else "http"

    async def run() -> None:
        from rspp.controlplane import FailoverMonitor
        from rspp.controlplane._signing_keys import KeyRotationMonitor

        cp = await ControlPlane.open(settings)
        monitor = FailoverMonitor(cp)
        monitor.start()
        rotation = KeyRotationMonitor(cp.signing)
        rotation.start()
        try:
            from rspp.controlplane._server import stop_serving
            from rspp.server._process import _Server

            config = uvicorn.Config(
                create_app(cp), host=host, port=port, log_level="warning",
                ssl_context_factory=(lambda _c, _d: tls.context) if tls is not None else None)
            # SIGTERM/SIGINT: finish in-flight requests (long polls answer now), stop the
            # monitor, close the store, exit 0 (Kubernetes stops pods with SIGTERM)
            server = _Server(config, lambda: stop_serving(server, cp))
            serving = asyncio.create_task(server.serve(), name="rspp-cp-uvicorn")
            # the banner says the control plane answers: print it once uvicorn listens (it
            # was printed before the bind, and a client that waited for it could be refused)
            while not server.started and not serving.done():  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.01)
            if server.started:
                mutual = ", mutual TLS" if client_ca is not None else ""
                typer.echo(f"rspp control plane on {scheme}://{host}:{port} "
                           f"(db {settings.db_url.split('://')[0]}{mutual})")
            try:
                await serving
                # uvicorn re-raises a captured SIGINT when serve() returns: asyncio.run then
                # cancels this task, at this await rather than inside the close below
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass
        finally:
            await rotation.stop()
            await monitor.stop()
            await cp.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        pass
    typer.echo("control plane stopped")


def _server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> Any:
    """The control plane's reloading TLS context (None: plain HTTP); exit 2 naming the
    option when the files are missing, mismatched or half given."""
    from rspp.controlplane import CPError
    from rspp.controlplane._tls import ReloadingServerContext, ServerTls

    if cert is None and key is None:
        if client_ca is not None:
            typer.echo("error: --client-ca needs --tls-cert and --tls-key (mutual TLS "
                       "is served over HTTPS)", err=True)
            raise typer.Exit(2)
        return None
    if cert is None or key is None:
        typer.echo(f"error: {'--tls-key' if key is None else '--tls-cert'} is required "
                   "with the other (a certificate and its key)", err=True)
        raise typer.Exit(2)
    try:
        return ReloadingServerContext(ServerTls(cert=cert, key=key, client_ca=client_ca))
    except CPError as exc:
        typer.echo(f"error: --{(exc.field or 'tls_cert').replace('_', '-')}: {exc.message}",
                   err=True)
        raise typer.Exit(2) from None


def _token_keys(secret: str | None, key_file: Path | None, keys_type: Any) -> Any:
    """``--token-secret`` (HS256) or ``--token-key-file`` (Ed25519, created if missing);
    exit 2 naming the option when either is unusable."""
    from rspp.controlplane import CPError

    try:
        if secret:
            return keys_type.hs256(secret)
        return keys_type.ed25519_file(key_file) if key_file is not None else None
    except CPError as exc:
        typer.echo(f"error: --{(exc.field or 'token_key_file').replace('_', '-')}: "
                   f"{exc.message}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
