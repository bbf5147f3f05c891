"""The ``rspp cp`` HTTP client: shared ``--server``/``--api-key`` options, the request
wrapper that turns control-plane errors into one line, and the caller's mTLS context."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

T = TypeVar("T")

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

