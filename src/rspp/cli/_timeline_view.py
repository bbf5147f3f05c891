"""``rspp timeline view FILE``: a recorded timeline in the browser page's per-turn view."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from rspp.cli._errors import fail

__all__ = ["register", "view"]


def view(
    file: Path = typer.Argument(..., help="Timeline file (JSON Lines or MessagePack)."),
    report: Path | None = typer.Option(
        None, "--report", help="A divergence report of `rspp replay --report`: the turns it "
        "names are highlighted with its findings."),
    html_out: Path | None = typer.Option(
        None, "--html", help="Write a self-contained HTML file (works offline) instead of "
        "serving it."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to serve on."),
    port: int = typer.Option(8801, "--port", min=0, max=65535, help="Port (0: any free port)."),
) -> None:
    """Show a recorded timeline turn by turn (markers, latencies, plan, cancel/fence events).

    Serves it on http://HOST:PORT/ until Ctrl-C (the page re-reads the file on every load,
    so a timeline still being written refreshes), or writes it with --html.
    """
    from rspp.web import timeline_html, timeline_rows

    if not file.is_file():
        raise fail(f"error: {file}: file not found; pass a timeline written by `rspp run "
                   "--timeline` or `rspp serve --timeline-dir`")
    if report is not None and not report.is_file():
        raise fail(f"error: --report {report}: file not found")

    def render() -> str:
        try:
            rows, problems = timeline_rows(file, report)
        except ValueError as exc:
            raise fail(f"error: --report {report}: not a replay report ({exc})") from None
        return timeline_html(rows, title=str(file), problems=problems)

    page = render()
    if html_out is not None:
        html_out.write_text(page)
        typer.echo(f"wrote {html_out}")
        return
    asyncio.run(_serve(render, host, port))


async def _serve(render: object, host: str, port: int) -> None:
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    async def page(_: Request) -> Response:
        return HTMLResponse(render())  # type: ignore[operator]

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise fail(f"error: cannot listen on {host}:{port}: {exc.strerror}", 1) from None
    bound = sock.getsockname()[1]
    app = Starlette(routes=[Route("/", page, methods=["GET"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.01)
    if server.started:
        typer.echo(f"rspp timeline view: http://{host}:{bound}/ (Ctrl-C stops)")
    await task
    sock.close()


def register(timeline_app: typer.Typer) -> None:
    """Attach ``view`` to ``rspp timeline``."""
    timeline_app.command("view")(view)
