"""The runtime process (``rspp serve``): probes, metrics, CP-governed live sessions.

:func:`serve` runs one runtime process, embedded (with the control plane on
SQLite in the same process) or as a stateless runtime of a control plane.
:class:`Runtime` holds its control-plane link (registration, heartbeat, token
key, spec versions), its :class:`GovernedSessions` (token check, lease, plan
snapshots, drain) and :class:`ServerMetrics`; :func:`create_runtime_app` is
its ASGI app; :func:`telephony_routes` its carrier voice webhook (phone calls);
:func:`livekit_routes` joins routed sessions to LiveKit rooms.
"""

from rspp.server._app import create_runtime_app
from rspp.server._cplink import ControlPlaneLink, LinkOptions, SessionRefused
from rspp.server._factory import GovernedFactory
from rspp.server._lease import ControlPlaneSnapshots, LeaseKeeper
from rspp.server._livekit import LiveKitRooms, livekit_routes
from rspp.server._loopback import LoopbackServedSession, LoopbackSessionBuilder
from rspp.server._metrics import ServerMetrics
from rspp.server._process import DEFAULT_SPEC, ServeOptions, TransportRoutes, serve
from rspp.server._runtime import Runtime, RuntimeOptions
from rspp.server._sessions import GovernedSessions, ServedSession, SessionPolicy
from rspp.server._telephony import (
    PhoneNumber,
    TelephonyConfig,
    parse_phone_number,
    telephony_routes,
    twilio_signature,
)

__all__ = [
    "DEFAULT_SPEC",
    "ControlPlaneLink",
    "ControlPlaneSnapshots",
    "GovernedFactory",
    "GovernedSessions",
    "LeaseKeeper",
    "LinkOptions",
    "LiveKitRooms",
    "LoopbackServedSession",
    "LoopbackSessionBuilder",
    "PhoneNumber",
    "Runtime",
    "RuntimeOptions",
    "ServeOptions",
    "ServedSession",
    "ServerMetrics",
    "SessionPolicy",
    "SessionRefused",
    "TelephonyConfig",
    "TransportRoutes",
    "create_runtime_app",
    "livekit_routes",
    "parse_phone_number",
    "serve",
    "telephony_routes",
    "twilio_signature",
]
