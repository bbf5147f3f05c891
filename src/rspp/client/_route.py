"""Where a live session connects: a direct WebSocket URL, or a route from a control plane.

:func:`route_session` asks a control plane (``POST /v1/sessions/route`` with an
API key) for a session: runtime endpoint, session id and a signed short-lived
token; :func:`session_url` turns the runtime endpoint into the session's
WebSocket URL (``/v1/sessions/{id}/ws``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from rspp.client._client import SessionRefusedError

__all__ = ["SessionTarget", "direct_target", "route_session", "session_url"]


@dataclass(frozen=True, slots=True)
class SessionTarget:
    url: str
    token: str | None
    session_id: str
    pipeline_version: str | None = None


def session_url(endpoint: str, session_id: str) -> str:
    """``ws(s)://host[:port]/v1/sessions/{id}/ws`` for a runtime endpoint (http or ws)."""
    parts = urlsplit(endpoint)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise SessionRefusedError(None, f"runtime endpoint {endpoint!r} is not an http(s) or "
                                  "ws(s) URL")
    path = parts.path.rstrip("/")
    if "/v1/sessions/" not in path:
        path = f"{path}/v1/sessions/{session_id}/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def direct_target(url: str, token: str | None) -> SessionTarget:
    """A ``ws(s)://.../v1/sessions/{id}/ws`` URL (token in ``?token=`` or given)."""
    parts = urlsplit(url)
    segs = parts.path.strip("/").split("/")
    if len(segs) < 4 or segs[:2] != ["v1", "sessions"] or segs[3] != "ws":
        raise SessionRefusedError(None, f"{url}: expected ws://HOST:PORT/v1/sessions/ID/ws")
    found = parse_qs(parts.query).get("token")
    tok = token or (found[0] if found else None)
    return SessionTarget(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), tok,
                         segs[2])


async def route_session(cp_url: str, *, tenant_id: str, api_key: str | None,
                        pipeline_name: str, timeout_s: float = 10.0,
                        attributes: Mapping[str, str] | None = None) -> SessionTarget:
    """Ask the control plane at ``cp_url`` for a session route; raises SessionRefusedError.

    ``attributes`` (``language``, ``region``, ``cost_tier``...) are what the tenant's
    provider policy matches its rules on (F-056)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body: dict[str, object] = {"tenant_id": tenant_id, "pipeline_name": pipeline_name}
    if attributes:
        body["attributes"] = dict(attributes)
    try:
        async with httpx.AsyncClient(base_url=cp_url.rstrip("/"), timeout=timeout_s) as http:
            resp = await http.post("/v1/sessions/route", json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise SessionRefusedError(None, f"control plane {cp_url} unreachable: {exc}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json()
        except ValueError:
            detail = resp.text[:200]
        raise SessionRefusedError(resp.status_code, f"route refused by {cp_url}: {detail}")
    data = resp.json()
    try:
        sid = str(data["session_id"])
        return SessionTarget(session_url(str(data["endpoint"]), sid), str(data["token"]), sid,
                             str(data.get("pipeline_version") or "") or None)
    except (KeyError, TypeError) as exc:
        raise SessionRefusedError(resp.status_code, f"route from {cp_url} lacks {exc}") from None
