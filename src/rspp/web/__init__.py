"""The browser page of ``rspp serve`` and the timeline viewer.

:func:`web_routes` serves the page at ``/`` (talk over WebRTC with a WebSocket
fallback; live transcript, reply and a per-turn timeline), its config, pipeline and
session-token endpoints (loopback clients of an embedded server only; see
:mod:`rspp.web._app`) and ``/timelines``. :func:`timeline_rows` and
:func:`timeline_html` render a recorded timeline in the same per-turn view
(``rspp timeline view``).
"""

from rspp.web._app import STATIC, WebOptions, local_client, web_routes
from rspp.web._viewer import divergences_by_turn, timeline_html, timeline_rows

__all__ = ["STATIC", "WebOptions", "divergences_by_turn", "local_client", "timeline_html",
           "timeline_rows", "web_routes"]
