"""Client side of live sessions: :class:`LiveClient` speaks the ``rspp.v1`` WebSocket protocol.

``rspp talk`` is built on it; see README "Talk to a running server".
"""

from rspp.client._client import LiveClient, SessionRefusedError

__all__ = ["LiveClient", "SessionRefusedError"]
