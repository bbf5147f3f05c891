"""Custom nodes the failure-matrix specs name as ``python:fm_nodes:CLASS``.

The scenarios run ``rspp run`` with this directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio

from rspp import Event, Node


class Crash(Node):
    """Raises on every reply sentence (an unrecoverable node failure)."""

    inputs = ("text",)
    outputs = ("text",)
    port_types = {"text": "text"}
    scope = "turn"

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind == "text" and str(event.payload or "").strip():
            raise RuntimeError("injected failure in a reply sentence")
        return event


class SlowTap(Node):
    """A side consumer of the input audio that needs 40 ms per 20 ms frame."""

    inputs = ("audio",)
    outputs = ("audio",)
    port_types = {"audio": "audio"}
    scope = "session"

    async def process(self, event: Event, port: str) -> Event | None:
        await asyncio.sleep(0.04)
        return None
