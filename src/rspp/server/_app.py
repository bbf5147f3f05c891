"""The ASGI app of ``rspp serve``: probes, metrics, transport endpoints, embedded CP API.

``/healthz`` (liveness: the process serves requests), ``/readyz`` (ready only
while registered with the control plane, its last heartbeat reached it, and not
draining; 503 otherwise, with the state), ``/metrics`` (Prometheus text; bounded
labels; OpenMetrics with the turn exemplars when the scraper accepts it),
``POST /v1/sessions/{id}/debug`` (an operator's debug capture of a session served
here, authorised by the control plane: :mod:`rspp.server._debug`). The transport
endpoints (WebSocket ``/v1/sessions/{id}/ws``) come first; in embedded mode the
control plane's HTTP API is mounted behind them on the same port.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from rspp.observability import OPENMETRICS_CONTENT_TYPE
from rspp.server._debug import debug_routes
from rspp.server._runtime import Runtime

__all__ = ["create_runtime_app"]

_PROM = "text/plain; version=0.0.4; charset=utf-8"


def create_runtime_app(runtime: Runtime, *, transport_routes: Sequence[BaseRoute] = (),
                       control_plane: ASGIApp | None = None) -> Starlette:
    """The runtime's app; ``control_plane`` (embedded mode) serves every other path."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "runtime_id": runtime.link.runtime_id})

    async def readyz(_: Request) -> Response:
        state = runtime.state
        body = {"status": state, "runtime_id": runtime.link.runtime_id,
                "sessions": len(runtime.sessions)}
        return JSONResponse(body, 200 if runtime.ready else 503)

    async def metrics(request: Request) -> Response:
        # a Prometheus that accepts OpenMetrics gets it: the exemplars carry the turn ids
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            return Response(runtime.metrics.scrape(openmetrics=True),
                            media_type=OPENMETRICS_CONTENT_TYPE)
        return Response(runtime.metrics.scrape(), media_type=_PROM)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *debug_routes(runtime.sessions),
        *transport_routes,
    ]
    if control_plane is not None:
        routes.append(Mount("/", app=control_plane))
    return Starlette(routes=routes)
