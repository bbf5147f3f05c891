"""Client side of live sessions: :class:`LiveClient` speaks the ``rspp.v1`` WebSocket protocol.

:func:`talk` runs a spoken conversation on it (``rspp talk``); :func:`route_session`
gets a session route (runtime URL + token) from a control plane; :class:`FailoverClient`
follows a session to another runtime when its runtime fails or drains. :class:`CarrierCall`
is a phone carrier stand-in (Twilio Media Streams) for phone-call pipelines. See README
"Talk to a running server".
"""

from rspp.client._carrier import CarrierCall, CarrierStats
from rspp.client._client import EpochFence, LiveClient, SessionRefusedError
from rspp.client._failover import (
    FailoverClient,
    FailoverEvent,
    OutputNote,
    Placement,
    Rerouter,
)
from rspp.client._route import SessionTarget, direct_target, route_session, session_url
from rspp.client._talk import TalkOptions, TalkResult, TalkTurn, latency_table, talk

__all__ = [
    "CarrierCall",
    "CarrierStats",
    "EpochFence",
    "FailoverClient",
    "FailoverEvent",
    "LiveClient",
    "OutputNote",
    "Placement",
    "Rerouter",
    "SessionRefusedError",
    "SessionTarget",
    "TalkOptions",
    "TalkResult",
    "TalkTurn",
    "direct_target",
    "latency_table",
    "route_session",
    "session_url",
    "talk",
]
