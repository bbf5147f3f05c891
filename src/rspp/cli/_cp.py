"""``rspp cp ...``: run the control plane and operate it over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

T = TypeVar("T")

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
region_app = typer.Typer(help="Regions: runtimes, room and incidents (F-110, F-112).",
                         no_args_is_help=True)
cp_app.add_typer(region_app, name="region")

DEFAULT_SERVER = "http://127.0.0.1:8700"

ServerOpt = typer.Option(
    DEFAULT_SERVER, "--server", envvar="RSPP_SERVER", help="Control-plane URL."
)
KeyOpt = typer.Option(None, "--api-key", envvar="RSPP_API_KEY", help="Bearer API key.")


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


class _Client:
    """Minimal synchronous HTTP client for the CLI (keeps start-up light: httpx only)."""

    def __init__(self, server: str, api_key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.server = server.rstrip("/")
        tls = client_tls_from_env()
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=30.0,
                                  verify=tls.context if tls is not None else True)

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            tls = ("" if not self.server.startswith("https://") else
                   "; over TLS: check the client certificate (RSPP_TLS_CLIENT_CERT, "
                   "RSPP_TLS_CLIENT_KEY) and the CA bundle (RSPP_TLS_CA): a control plane "
                   "with --client-ca closes connections without a certificate its CA signed")
            raise _CliError(
                "unavailable",
                f"control plane at {self.server} is unreachable ({exc.__class__.__name__}); "
                f"check --server / RSPP_SERVER and that `rspp cp serve` is running{tls}",
                "server",
            ) from None
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
                raise _CliError(str(err["code"]), str(err["message"]), err.get("field"))
            except (ValueError, KeyError, TypeError):
                raise _CliError("http_error", f"HTTP {response.status_code}", None) from None
        return response.json()

    def publish(self, text: str, filename: str, force: bool = False) -> Any:
        body = {"spec": text, "filename": filename, **({"force": True} if force else {})}
        return self.request("POST", "/v1/pipelines", json=body)

    def publish_module(self, text: str) -> Any:
        return self.request("POST", "/v1/modules", json={"module": text})

    def list_pipelines(self, name: str | None = None) -> Any:
        return self.request("GET", "/v1/pipelines", params={"name": name} if name else None)

    def get_pipeline(self, name: str, version: str | None) -> Any:
        return self.request(
            "GET", f"/v1/pipelines/{name}" + (f"/versions/{version}" if version else "")
        )

    def rollout(self, name: str, canary: str, percent: float, tenants: list[str]) -> Any:
        body = {"canary": canary, "percent": percent, "tenants": tenants}
        return self.request("POST", f"/v1/pipelines/{name}/rollout", json=body)

    def rollback(self, name: str, to: str) -> Any:
        return self.request("POST", f"/v1/pipelines/{name}/rollback", json={"to": to})

    def route(self, tenant_id: str, pipeline_name: str, **extra: Any) -> Any:
        body = {"tenant_id": tenant_id, "pipeline_name": pipeline_name, **extra}
        return self.request("POST", "/v1/sessions/route", json=body)


def client_tls_from_env(cert: Path | None = None, key: Path | None = None,
                        ca: Path | None = None) -> Any:
    """The caller's mTLS context (F-120) from the given files, else ``RSPP_TLS_CLIENT_CERT``,
    ``RSPP_TLS_CLIENT_KEY`` and ``RSPP_TLS_CA``; None when none is set."""
    import os

    def pick(given: Path | None, env: str) -> Path | None:
        value = given or os.environ.get(env)
        return Path(value) if value else None

    files = (pick(cert, "RSPP_TLS_CLIENT_CERT"), pick(key, "RSPP_TLS_CLIENT_KEY"),
             pick(ca, "RSPP_TLS_CA"))
    if files == (None, None, None):
        return None  # before importing the control plane package: start-up stays light
    from rspp.controlplane import CPError
    from rspp.controlplane._tls import ClientTls, ReloadingClientContext

    tls = ClientTls(cert=files[0], key=files[1], ca=files[2])
    try:
        return ReloadingClientContext(tls)
    except CPError as exc:
        raise _CliError(exc.code, exc.message, exc.field) from None


class _CliError(Exception):
    def __init__(self, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def _call(server: str, api_key: str | None, work: Callable[[_Client], T]) -> T:
    """Run one client interaction; print a clear error and exit 1 on failure."""
    try:
        return work(_Client(server, api_key))
    except _CliError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        typer.echo(f"error: {exc.code}: {exc.message}{field}", err=True)
        raise typer.Exit(1) from None


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
    if secret:
        return keys_type.hs256(secret)
    if key_file is None:
        return None
    if key_file.exists():
        from cryptography.hazmat.primitives import serialization

        private_pem = key_file.read_text()
        private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        public_pem = (
            private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        return keys_type(algorithm="EdDSA", private_pem=private_pem, public_pem=public_pem)
    generated = keys_type.generate_ed25519()
    key_file.write_text(generated.private_pem)
    key_file.chmod(0o600)
    return generated


@cp_app.command("publish")
def publish(
    spec: Path = typer.Argument(..., help="PipelineSpec file (YAML/JSON)."),
    module: bool = typer.Option(False, "--module", help="Publish as a reusable subgraph module."),
    force: bool = typer.Option(False, "--force", help="Admin: publish during a budget freeze."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Publish a PipelineSpec version (immutable once published)."""
    try:
        text = spec.read_text(encoding="utf-8")
    except OSError as exc:
        typer.echo(f"error: cannot read {spec}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    if module:
        _print(_call(server, api_key, lambda c: c.publish_module(text)))
    else:
        _print(_call(server, api_key, lambda c: c.publish(text, str(spec), force=force)))


@cp_app.command("list")
def list_(
    name: str = typer.Option(None, "--name"), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """List published pipeline versions with author, created_at and hash."""
    result = _call(server, api_key, lambda c: c.list_pipelines(name))
    for p in result["pipelines"]:
        typer.echo(
            f"{p['name']}@{p['version']}  {p['spec_hash'][:16]}  {p['author']}  "
            f"{p['created_at_ms']}"
        )


@cp_app.command("get")
def get(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Show one published version (latest when no @VERSION)."""
    name, _, version = ref.partition("@")
    _print(_call(server, api_key, lambda c: c.get_pipeline(name, version or None)))


@cp_app.command("rollout")
def rollout(
    name: str = typer.Argument(..., help="Pipeline name (or `status NAME`: the gate table)."),
    subject: str = typer.Argument(None, help="With `status`: the pipeline name."),
    to: str = typer.Option(None, "--to", "--canary", help="Version to roll out."),
    percent: float = typer.Option(None, "--percent", help="Share of sessions (0-100)."),
    tenants: list[str] = typer.Option(
        [], "--tenants", help="Restrict the canary to these tenants."
    ),
    promote_after: int = typer.Option(
        None, "--promote-after", min=1,
        help="Gated: canary turns at a step before it is promoted to the next step.",
    ),
    rollback_on_gates: bool = typer.Option(
        False, "--rollback-on-gates",
        help="Gated: roll back automatically when any canary quality gate fails.",
    ),
    steps: str = typer.Option(
        None, "--steps", help="Gated: the percentages after --percent (default 25,50,100)."
    ),
    window: int = typer.Option(
        None, "--window", min=1, help="Gated: gate samples per version in the window (200)."
    ),
    min_samples: int = typer.Option(
        None, "--min-samples", min=1, help="Gated: fewest samples for a verdict (20)."
    ),
    as_json: bool = typer.Option(False, "--json", help="`status`: print JSON."),
    force: bool = typer.Option(False, "--force", help="Admin: roll out during a budget freeze."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Start or change a canary rollout; gated with --promote-after/--rollback-on-gates.

    `rspp cp rollout status NAME` shows the canary and baseline gate tables, the
    current percentage, the next step and the last decision with its reason.
    """
    if name == "status" and subject:
        result = _call(server, api_key,
                       lambda c: c.request("GET", f"/v1/pipelines/{subject}/rollout/status"))
        if as_json:
            _print(result)
        else:
            typer.echo(rollout_status_text(result))
        return
    if subject or to is None or percent is None:
        typer.echo("error: use `rspp cp rollout NAME --to VERSION --percent P` or "
                   "`rspp cp rollout status NAME`", err=True)
        raise typer.Exit(2)
    flat = [t for item in tenants for t in item.split(",") if t]
    body: dict[str, Any] = {"canary": to, "percent": percent, "tenants": flat}
    try:
        plan = [float(x) for x in steps.split(",") if x.strip()] if steps else []
    except ValueError:
        typer.echo(f"error: --steps {steps!r}: comma-separated percentages", err=True)
        raise typer.Exit(2) from None
    for key, value in (("promote_after", promote_after), ("window", window),
                       ("min_samples", min_samples), ("steps", plan or None)):
        if value is not None:
            body[key] = value
    body.update({k: True for k, on in (("rollback_on_gates", rollback_on_gates),
                                       ("force", force)) if on})
    _print(_call(server, api_key,
                 lambda c: c.request("POST", f"/v1/pipelines/{name}/rollout", json=body)))


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def rollout_status_text(status: dict[str, Any]) -> str:
    """The gate table of ``GET /v1/pipelines/{name}/rollout/status`` for a terminal."""
    name, state, policy = status["pipeline_name"], status["rollout"], status["policy"]
    if state is None:
        return f"{name}: no rollout (new sessions get the latest published version)"
    lines = [f"{name}: stable {state['stable_version']}" + (
        f", canary {state['canary_version']} at {state['percent']:g}%"
        if state["canary_version"] else ", no canary")]
    if policy is None:
        lines.append("not gated (start with --promote-after and/or --rollback-on-gates)")
        return "\n".join(lines)
    nxt = status["next_step"]
    lines.append(
        f"gated rollout of {policy['canary_version']}: {policy['state']}; steps "
        + " -> ".join(f"{s:g}%" for s in policy["steps"])
        + (f"; next step {nxt:g}% after {policy['promote_after']} turns "
           f"({status['turns_at_step']} so far)" if nxt is not None else "")
        + f"; window {policy['window']} samples, verdict from {policy['min_samples']}")
    tables = [t for t in (status["canary"], status["baseline"]) if t is not None]
    head = f"{'gate':<4}  {'name':<20}  {'threshold':<31}"
    for which, t in zip(("canary", "baseline"), tables, strict=False):
        head += f"  {which} {t['version']} (n={t['samples']})".ljust(36)
    lines.append(head)
    for i, gate in enumerate(tables[0]["gates"]):
        row = f"{gate['gate']:<4}  {gate['name']:<20}  {gate['threshold']:<31}"
        for t in tables:
            g = t["gates"][i]
            verdict = g["status"] if t["evaluated"] else "waiting"
            figures = (f"p50 {_ms(g['p50'])} p95 {_ms(g['p95'])} p99 {_ms(g['p99'])}"
                       if g["p50"] is not None else f"value {_ms(g['value'])}")
            row += f"  {verdict:<10} {figures}".ljust(36)
        lines.append(row.rstrip())
    last = status["last_decision"]
    lines.append("last decision: " + (f"{last['action']} ({last['from_percent']:g}% -> "
                                      f"{last['to_percent']:g}%): {last['reason']}"
                                      if last else "none yet"))
    return "\n".join(lines)


@cp_app.command("rollback")
def rollback(
    name: str = typer.Argument(...),
    to: str = typer.Option(..., "--to"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Route every new session to VERSION and clear the canary."""
    _print(_call(server, api_key, lambda c: c.rollback(name, to)))


@cp_app.command("route")
def route(
    tenant: str = typer.Option(..., "--tenant"),
    pipeline: str = typer.Option(None, "--pipeline", help="Pipeline name (default: the only one)."),
    session: str = typer.Option(None, "--session"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Route a new session: runtime endpoint, transport kind and a signed token."""

    def work(client: _Client) -> Any:
        name = pipeline
        if name is None:
            names = sorted({p["name"] for p in client.list_pipelines()["pipelines"]})
            if len(names) != 1:
                raise _CliError(
                    "invalid", f"choose a pipeline with --pipeline (published: {names})", "pipeline"
                )
            name = names[0]
        extra = {"session_id": session} if session else {}
        return client.route(tenant, name, **extra)

    _print(_call(server, api_key, work))


@token_app.command("issue")
def token_issue(
    session: str = typer.Option(..., "--session"),
    tenant: str = typer.Option(..., "--tenant"),
    ttl: int = typer.Option(None, "--ttl", help="Seconds (default 300)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Issue a token for a routed session; prints the token."""
    body = {"tenant_id": tenant, "ttl_s": ttl}
    result = _call(
        server, api_key, lambda c: c.request("POST", f"/v1/sessions/{session}/token", json=body)
    )
    typer.echo(result["token"])


@token_app.command("verify")
def token_verify(
    token: str = typer.Argument(...), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """Exit 0 only for a valid, unexpired, untampered token."""
    result = _call(
        server, api_key, lambda c: c.request("POST", "/v1/tokens/verify", json={"token": token})
    )
    _print(result["claims"])
    typer.echo("valid")


@cp_app.command("status")
def status(
    session: str = typer.Argument(...), server: str = ServerOpt, api_key: str = KeyOpt
) -> None:
    """Session status: routed, connected, running, degraded or ended."""
    result = _call(server, api_key, lambda c: c.request("GET", f"/v1/sessions/{session}"))
    _print(result)


@cp_app.command("audit")
def audit(
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain; exit 1 if broken."),
    tenant: str = typer.Option(
        None, "--tenant", help="Only this tenant's entries (a tenant key reads only its own)."
    ),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Print the audit log (JSON lines), or verify its hash chain (fleet keys)."""
    if verify:
        verdict = _call(server, api_key, lambda c: c.request("GET", "/v1/audit/verify"))
        if not verdict["ok"]:
            typer.echo(
                f"audit chain BROKEN at seq {verdict['first_bad_seq']}: {verdict['reason']}",
                err=True,
            )
            raise typer.Exit(1)
        typer.echo(f"audit chain ok ({verdict['checked']} entries)")
        return
    query = {"tenant_id": tenant} if tenant else None
    result = _call(server, api_key, lambda c: c.request("GET", "/v1/audit", params=query))
    for entry in result["entries"]:
        typer.echo(json.dumps(entry, sort_keys=True))


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., "--role", help="viewer, operator or admin."),
    tenant: str = typer.Option(
        None, "--tenant", help="Scope the key to one tenant (its sessions, leases, outcomes)."
    ),
    fleet: bool = typer.Option(
        False,
        "--fleet",
        help="A fleet-scoped key (the default without --tenant): runtimes (`rspp serve "
        "--control-plane URL --api-key K` needs a fleet operator key), rollouts, configs.",
    ),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Create an API key; the key is printed on the last line (shown once)."""
    if fleet and tenant:
        typer.echo("error: --fleet and --tenant exclude each other", err=True)
        raise typer.Exit(2)
    body = {"role": role, "tenant_id": tenant}
    result = _call(server, api_key, lambda c: c.request("POST", "/v1/keys", json=body))
    scope = f"tenant {result['tenant_id']}" if result["tenant_id"] else "fleet"
    typer.echo(f"key id {result['key_id']} role {result['role']} scope {scope}")
    typer.echo(result["key"])


@cp_app.command("openapi")
def openapi() -> None:
    """Print the control plane's OpenAPI 3.1 document (JSON), as served at /openapi.json."""
    from rspp.controlplane import openapi_document

    typer.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))


@config_app.command("publish")
def config_publish(
    file: Path = typer.Argument(..., help="Config file: kind, scope and body (YAML/JSON)."),
    inactive: bool = typer.Option(False, "--inactive", help="Publish without activating."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Check a config file as `rspp validate` does, then publish it (and activate it)."""
    from rspp.cli._spec import issue_line
    from rspp.controlplane import lint_config_text
    from rspp.providers import PROVIDER_CATALOG
    from rspp.spec import SpecInvalid, read_spec_source

    try:
        config, issues = lint_config_text(read_spec_source(file), str(file),
                                          adapters=PROVIDER_CATALOG)
    except SpecInvalid as exc:
        config, issues = None, list(exc.issues)
    for issue in issues:
        typer.echo(issue_line(issue), err=True)
    if config is None:
        raise typer.Exit(1)
    path = f"/v1/configs/{config.kind.value}/{config.scope}"
    body = {"body": config.body, "activate": not inactive}
    _print(_call(server, api_key, lambda c: c.request("POST", path, json=body)))


@runtime_app.command("register")
def runtime_register(
    runtime_id: str = typer.Argument(...),
    endpoint: str = typer.Option(..., "--endpoint"),
    transport: str = typer.Option("websocket", "--transport"),
    region: str = typer.Option("default", "--region"),
    capacity: int = typer.Option(100, "--capacity"),
    runtime_version: str = typer.Option(
        None, "--runtime-version", help="Release the runtime runs (default: this one's)."),
    schema_version: str = typer.Option(
        None, "--schema-version", help="Contract schema it writes (default: this one's)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Register (or re-register) a runtime instance; the control plane refuses a release or
    schema outside its version-skew window (409 version_skew)."""
    from rspp import __version__
    from rspp.contracts import SCHEMA_VERSION

    body = {
        "runtime_id": runtime_id,
        "endpoint": endpoint,
        "transport_kind": transport,
        "region": region,
        "capacity": capacity,
        "runtime_version": runtime_version or __version__,
        "schema_version": schema_version or SCHEMA_VERSION,
    }
    _print(_call(server, api_key, lambda c: c.request("POST", "/v1/runtimes", json=body)))


@runtime_app.command("heartbeat")
def runtime_heartbeat(
    runtime_id: str = typer.Argument(...),
    health: str = typer.Option("healthy", "--health"),
    load: int = typer.Option(None, "--load"),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Report health/load; an unhealthy runtime's sessions are migrated."""
    body = {"health": health, "load": load}
    _print(
        _call(
            server,
            api_key,
            lambda c: c.request("POST", f"/v1/runtimes/{runtime_id}/heartbeat", json=body),
        )
    )


@signing_app.command("rotate")
def signing_keys_rotate(
    key_ref: str = typer.Option(
        None, "--key-ref", help="The new key: file:PATH or env:VAR (an Ed25519 PEM the "
        "control plane reads); default: generated in its --token-key-dir."),
    reason: str = typer.Option("manual", "--reason", help="Recorded in the audit entry."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Make a new signing key active; the previous one verifies until its tokens expired."""
    _print(_call(server, api_key, lambda c: c.request(
        "POST", "/v1/tokens/keys/rotate", json={"key_ref": key_ref, "reason": reason})))


@signing_app.command("status")
def signing_keys_status(server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """The signing keys, the active key's age against the maximum, and whether it is due."""
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/tokens/keys/status")))


@region_app.command("incident")
def region_incident(
    region: str = typer.Argument(..., help="The region (as runtimes register it)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit entry)."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Declare a region incident: new sessions and failover moves go elsewhere."""
    _print(_call(server, api_key, lambda c: c.request(
        "PUT", f"/v1/regions/{region}/incident", json={"reason": reason})))


@region_app.command("clear")
def region_clear(region: str = typer.Argument(...), server: str = ServerOpt,
                 api_key: str = KeyOpt) -> None:
    """Close a region's incident."""
    _print(_call(server, api_key, lambda c: c.request("DELETE",
                                                      f"/v1/regions/{region}/incident")))


@region_app.command("list")
def region_list(server: str = ServerOpt, api_key: str = KeyOpt) -> None:
    """Regions with their runtimes, healthy ones, free capacity and incident."""
    _print(_call(server, api_key, lambda c: c.request("GET", "/v1/regions")))


def register(app: typer.Typer) -> None:
    """Attach ``rspp cp`` to the root app."""
    app.add_typer(cp_app, name="cp")
