"""HTTP connection pools shared by the sessions of one runtime (F-105).

Without it every session's adapters build their own ``httpx.AsyncClient``: each
session opens (TCP, TLS) its own connections to the same provider endpoint and drops
them when it ends. :class:`HttpClientPool` keeps one client per endpoint origin
(``scheme://host:port``) for the whole process, so a session's request reuses a
kept-alive connection another session opened. It is bounded: at most
``max_connections`` connections per endpoint (a request beyond waits for one, up to
the adapter's pool timeout) and ``max_endpoints`` endpoints (an adapter of a further
endpoint gets no shared client and builds its own, as before). Cancelling one
session's request closes that request's connection only (httpx discards a connection
whose response was not read to the end): another session's stream on another
connection goes on. :meth:`HttpClientPool.aclose` closes every client at shutdown;
an adapter given a shared client never closes it (``aclose`` of the adapter closes
only a client it built itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

__all__ = ["HttpClientPool", "HttpPoolLimits"]

#: the adapters' own timeouts (30 s per read, 5 s to connect)
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class HttpPoolLimits:
    """Bounds of a runtime's shared provider connections."""

    #: connections open at once per endpoint (in use or idle)
    max_connections: int = 64
    #: idle connections kept alive per endpoint
    max_keepalive: int = 32
    #: seconds an idle connection is kept
    keepalive_expiry_s: float = 30.0
    #: endpoints with a shared client; further ones are not pooled
    max_endpoints: int = 32


class HttpClientPool:
    """One ``httpx.AsyncClient`` per provider endpoint, shared by a runtime's sessions."""

    def __init__(self, limits: HttpPoolLimits | None = None) -> None:
        self.limits = limits or HttpPoolLimits()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._closed = False
        #: clients handed out (each adapter built with a shared client counts once)
        self.shared = 0

    @staticmethod
    def origin(base_url: str) -> str:
        """``scheme://host:port`` of ``base_url`` (the pool key)."""
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.scheme}://{parts.hostname}:{port}"

    def client_for(self, base_url: str) -> httpx.AsyncClient | None:
        """The shared client of ``base_url``'s endpoint (None: closed, or too many
        endpoints: the adapter builds its own)."""
        if self._closed:
            return None
        key = self.origin(base_url)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= self.limits.max_endpoints:
                return None
            lim = self.limits
            client = httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(
                max_connections=lim.max_connections,
                max_keepalive_connections=lim.max_keepalive,
                keepalive_expiry=lim.keepalive_expiry_s))
            self._clients[key] = client
        self.shared += 1
        return client

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self._clients)

    async def aclose(self) -> None:
        """Close every shared client (the runtime is stopping; idempotent)."""
        self._closed = True
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
