"""``rspp serve [SPEC]``: the runtime process (embedded control plane by default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from rspp.server import GovernedSessions, TransportRoutes

__all__ = ["register", "serve"]


def serve(
    spec: Path | None = typer.Argument(
        None, help="PipelineSpec to publish and serve (embedded mode; default: the offline "
        "voice assistant, pipelines/examples/voice_assistant.yaml)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
    port: int = typer.Option(8800, "--port", min=0, max=65535, help="Port (0: any free port)."),
    control_plane: str | None = typer.Option(
        None, "--control-plane", envvar="RSPP_CONTROL_PLANE",
        help="Control-plane URL: run as a stateless runtime of it (no embedded control plane)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="RSPP_API_KEY",
        help="Operator API key for the control plane (embedded: the admin key it accepts; "
        "generated and printed when omitted)."),
    db: str | None = typer.Option(
        None, "--db", envvar="RSPP_DB",
        help="Embedded control-plane database URL (default: ./rspp-controlplane.db)."),
    runtime_id: str | None = typer.Option(None, "--runtime-id", help="Runtime id to register."),
    capacity: int = typer.Option(100, "--capacity", min=1, help="Most concurrent sessions."),
    drain_deadline: float = typer.Option(
        30.0, "--drain-deadline", min=0.0,
        help="Seconds active turns get to finish after SIGTERM before sessions close."),
    drain_mode: str = typer.Option(
        "close", "--drain-mode", envvar="RSPP_DRAIN_MODE",
        help="On SIGTERM, once active turns finished: close each session, or migrate it to "
        "another runtime of the control plane (the client reconnects there)."),
    heartbeat_interval: float = typer.Option(
        2.0, "--heartbeat-interval", min=0.05, help="Seconds between heartbeats."),
    lease_ttl_ms: int = typer.Option(
        6000, "--lease-ttl-ms", min=300, max=86_400_000,
        help="Session lease TTL (renewed every third of it)."),
    timeline_dir: Path | None = typer.Option(
        None, "--timeline-dir", help="Write each session's timeline to DIR/<session>.jsonl."),
) -> None:
    """Serve live sessions (WebSocket) governed by a control plane; Ctrl-C/SIGTERM drains."""
    from rspp.controlplane import CPError
    from rspp.server import ServeOptions
    from rspp.server._process import main

    if control_plane is not None and spec is not None:
        typer.echo("error: SPEC is published only in embedded mode; with --control-plane "
                   "publish it with `rspp cp publish SPEC`", err=True)
        raise typer.Exit(2)
    if control_plane is not None and not api_key:
        typer.echo("error: --control-plane needs --api-key (an operator key of that control "
                   "plane) or RSPP_API_KEY", err=True)
        raise typer.Exit(2)
    if drain_mode not in ("close", "migrate"):
        typer.echo("error: --drain-mode must be close or migrate", err=True)
        raise typer.Exit(2)
    if spec is not None and not spec.exists():
        typer.echo(f"error: SPEC {spec}: file not found", err=True)
        raise typer.Exit(2)
    if timeline_dir is not None:
        timeline_dir.mkdir(parents=True, exist_ok=True)
    opts = ServeOptions(spec=spec, host=host, port=port, control_plane=control_plane,
                        api_key=api_key, db_url=db, runtime_id=runtime_id, capacity=capacity,
                        drain_deadline_s=drain_deadline, drain_mode=drain_mode,
                        heartbeat_interval_s=heartbeat_interval,
                        lease_ttl_ms=lease_ttl_ms, timeline_dir=timeline_dir,
                        transport_routes=_transport_routes())
    try:
        code = main(opts)
    except CPError as exc:
        field = f" (field: {exc.field})" if exc.field else ""
        typer.echo(f"error: control plane: {exc.code}: {exc.message}{field}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _transport_routes() -> TransportRoutes:
    """The WebSocket endpoint (``/v1/sessions/{id}/ws``) over the runtime's governed sessions."""
    from rspp.server import GovernedFactory
    from rspp.transports import websocket_route

    def routes(sessions: GovernedSessions) -> list[BaseRoute]:
        factory = GovernedFactory(sessions)
        return [websocket_route(factory, factory.verify)]

    return routes


def register(app: typer.Typer) -> None:
    """Add ``rspp serve`` to the root app."""
    app.command("serve")(serve)
