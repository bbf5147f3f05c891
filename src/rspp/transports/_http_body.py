"""A request body read no further than a limit (the transports' and runtime's HTTP routes).

Size-limit everything: a declared ``Content-Length`` over the limit is refused before a
byte is read, and a body streamed without one stops being read at the first chunk past
the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["read_body_within"]


async def read_body_within(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > limit:
            return None
    return bytes(data)
