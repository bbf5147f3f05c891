"""The browser page of ``rspp serve`` and its few JSON endpoints.

Routes (mounted by ``rspp serve`` before the control plane's API):

* ``GET /`` the page (talk button, transcript, reply, per-turn timeline); static files
  under ``/web/static/`` (plain HTML, CSS and ES modules; nothing from a CDN);
* ``GET /web/config`` what the page needs: whether WebRTC is available and whether this
  server issues it session tokens (STUN/TURN servers come with the session token from
  ``GET /v1/sessions/{id}/webrtc``);
* ``GET /web/pipelines`` and ``POST /web/session`` the published pipelines and a
  session route (id + short-lived token) for the page;
* ``GET /timelines`` recent session timelines (with ``--timeline-dir``) and
  ``GET /timelines/{name}`` one of them in the timeline viewer.

**Who gets a session token (deny by default).** Only an embedded ``rspp serve`` (a
developer's machine) issues tokens to the page, and only to a request that comes from
a loopback address, carries no proxy header (``Forwarded``/``X-Forwarded-For``: a
reverse proxy on the same host would make every client look local) and, when it has an
``Origin``, comes from this server's own origin (no cross-site request). Everyone else
gets 403 with a reason; the page then asks for an API key and calls the control
plane's own ``/v1/sessions/route``, which checks that key's role and tenant. The same
rule guards ``/web/pipelines`` and ``/timelines`` (timelines hold transcripts).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from rspp.web._viewer import timeline_html, timeline_rows

__all__ = ["STATIC", "WebOptions", "web_routes"]

STATIC = Path(__file__).resolve().parent / "static"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

#: ``route(tenant_id, pipeline_name)`` -> the control plane's route reply
RouteFn = Callable[[str, str], Awaitable[Any]]
PipelinesFn = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class WebOptions:
    #: issues loopback session tokens (embedded ``rspp serve`` only); None: never
    route: RouteFn | None = None
    pipelines: PipelinesFn | None = None
    #: the tenant of sessions the page starts with a loopback token
    tenant_id: str = "local"
    webrtc: bool = False
    timeline_dir: Path | None = None
    max_body_bytes: int = 4096
    extra: dict[str, Any] = field(default_factory=dict)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "field": field}},
                        status_code=status)


def local_client(request: Request) -> str | None:
    """None when ``request`` may use the loopback-only endpoints, else the reason it may not."""
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return f"client {host or 'unknown'} is not on this machine"
    if "forwarded" in request.headers or "x-forwarded-for" in request.headers:
        return "the request came through a proxy"
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"cross-origin request from {origin}"
    return None


class _SessionBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pipeline_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = \
        "voice-assistant"


_SESSION_BODY = msgspec.json.Decoder(_SessionBody)


def web_routes(opts: WebOptions) -> list[BaseRoute]:
    """The page, its endpoints and the timeline list (see the module docstring)."""

    def not_here(what: str) -> JSONResponse:
        return _error(403, "forbidden", f"this server issues no {what} to the page (only "
                      "an embedded `rspp serve` does); use an API key", "client")

    def refused(request: Request, what: str) -> JSONResponse | None:
        if opts.route is None:
            return not_here(what)
        why = local_client(request)
        if why is not None:
            return _error(403, "forbidden", f"{what} go only to loopback clients of an "
                          f"embedded `rspp serve` ({why}); use an API key", "client")
        return None

    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def config(request: Request) -> Response:
        return JSONResponse({
            "webrtc": opts.webrtc,
            "tokens": opts.route is not None and local_client(request) is None,
            "tenant_id": opts.tenant_id,
            "timelines": opts.timeline_dir is not None,
            **opts.extra})

    async def pipelines(request: Request) -> Response:
        no = refused(request, "pipeline lists")
        if no is not None or opts.pipelines is None:
            return no or not_here("pipeline lists")
        return JSONResponse(await opts.pipelines())

    async def session(request: Request) -> Response:
        no = refused(request, "session tokens")
        if no is not None or opts.route is None:
            return no or not_here("session tokens")
        raw = await request.body() if int(request.headers.get("content-length") or 0) \
            <= opts.max_body_bytes else None
        if raw is None or len(raw) > opts.max_body_bytes:
            return _error(413, "too_large", f"body exceeds {opts.max_body_bytes} bytes", "$")
        try:
            body = _SESSION_BODY.decode(raw or b"{}")
        except msgspec.MsgspecError as exc:
            return _error(400, "bad_request", f"bad session request: {exc}",
                          "pipeline_name" if "pipeline_name" in str(exc) else "$")
        from rspp.controlplane import CPError

        try:
            reply = await opts.route(opts.tenant_id, body.pipeline_name)
        except CPError as exc:
            return _error(exc.status if 400 <= exc.status < 500 else 503, exc.code,
                          exc.message, exc.field)
        return JSONResponse({k: reply.get(k) for k in (
            "session_id", "token", "pipeline_name", "pipeline_version", "token_expires_at_s")},
            status_code=201)

    def _timeline(name: str) -> Path | None:
        d = opts.timeline_dir
        if d is None or not _NAME.match(name):
            return None
        path = d / f"{name}.jsonl"
        return path if path.is_file() else None

    async def timelines(request: Request) -> Response:
        no = refused(request, "timelines")
        if no is not None:
            return no
        d = opts.timeline_dir
        files = sorted(d.glob("*.jsonl"), key=lambda p: p.stat().st_mtime,
                       reverse=True)[:50] if d is not None else []
        items = "".join(f'<li><a href="/timelines/{p.stem}">{p.stem}</a></li>' for p in files)
        note = "" if d is not None else "<p>Start <code>rspp serve --timeline-dir DIR</code> " \
            "to record session timelines.</p>"
        return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>RSPP timelines</title>"
                            f"<link rel=stylesheet href=/web/static/style.css><h1>Recent "
                            f"session timelines</h1>{note}<ul class=timelines>{items}</ul>")

    async def one_timeline(request: Request) -> Response:
        no = refused(request, "timelines")
        if no is not None:
            return no
        name = str(request.path_params["name"])
        path = _timeline(name)
        if path is None:
            return _error(404, "not_found", f"no timeline {name!r}", "name")
        rows, problems = timeline_rows(path)
        return HTMLResponse(timeline_html(rows, title=f"session {name}", problems=problems))

    return [
        Route("/", page, methods=["GET"]),
        Route("/web/config", config, methods=["GET"]),
        Route("/web/pipelines", pipelines, methods=["GET"]),
        Route("/web/session", session, methods=["POST"]),
        Route("/timelines", timelines, methods=["GET"]),
        Route("/timelines/{name}", one_timeline, methods=["GET"]),
        Mount("/web/static", app=StaticFiles(directory=STATIC), name="web_static"),
    ]
