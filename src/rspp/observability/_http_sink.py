"""Durable timeline export over HTTP (F-154): one POST of JSON Lines per batch.

``rspp serve --timeline-export-url URL`` gives every session a :class:`HttpExportSink`:
the recorder's bounded in-memory buffer is the session's local append (never blocking
control progress), and the exporter posts batches to ``URL`` asynchronously, retrying a
failed or timed-out batch with capped backoff and appending an ``export_recovered``
marker once it got through (:class:`~rspp.observability.TimelineExporter`). While the
endpoint is down or slow the buffer fills and the recorder downgrades its level
deterministically (L2 -> L1 -> L0, F-176), never dropping control evidence.

Each request: ``POST URL`` with ``Content-Type: application/x-ndjson``, the header
``X-RSPP-Session`` naming the session, and the batch's lines (the timeline file's lines);
any 2xx acknowledges the batch, anything else (or no answer within ``timeout_s``) fails
it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from rspp.errors import RSPPError

__all__ = ["ExportRefused", "HttpExportSink"]

_json = msgspec.json.Encoder()


class ExportRefused(RSPPError):
    """The export endpoint did not acknowledge a batch (the exporter retries it)."""


class HttpExportSink:
    """A :class:`~rspp.observability.TimelineSink` posting each batch to ``url``."""

    def __init__(self, url: str, session_id: str, *, timeout_s: float = 5.0) -> None:
        import httpx  # here: a process that exports nothing never loads the HTTP client

        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout_s, headers={
            "Content-Type": "application/x-ndjson", "X-RSPP-Session": session_id})

    async def write(self, lines: Sequence[Mapping[str, object]]) -> None:
        import httpx

        body = b"".join(_json.encode(line) + b"\n" for line in lines)
        try:
            resp = await self._client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise ExportRefused(f"export to {self.url}: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise ExportRefused(f"export to {self.url}: HTTP {resp.status_code}")

    async def close(self) -> None:
        await self._client.aclose()
