"""Transports: the shared transport contract, loopback (WAV files) and live WebSocket sessions.

The loopback transport (F-130) drives ``rspp run``. :class:`LiveTransport` is the
contract every network transport adapts (ingress re-chunked to 20 ms at the
pipeline rate, paced egress with the fence checked per frame, the shared event
vocabulary of :mod:`rspp.transports._protocol`, crossing frames recorded like
loopback's). :func:`websocket_route` is the WebSocket endpoint (F-084, F-086,
F-088, F-090, F-091); it plugs into a server through the :class:`SessionFactory`
and :class:`TokenVerifier` ports. :func:`twilio_stream_route` is the telephony
media-streams endpoint (Twilio protocol, mu-law 8 kHz, DTMF, marks; F-085, F-089)
on the same ports.
"""

from rspp.transports._contract import PlaybackObserver, Transport
from rspp.transports._egress import AudioFrame, OutboundQueue
from rspp.transports._ingress import Flood, IngressMeter, Rechunker, StreamResampler
from rspp.transports._live import InputRejected, LiveOptions, LiveTransport, parse_mark
from rspp.transports._live_session import LiveSessionHandle, SessionCore
from rspp.transports._loopback import LoopbackOptions, LoopbackTransport, TurnOutput
from rspp.transports._mulaw import mulaw_decode, mulaw_encode
from rspp.transports._protocol import (
    CLIENT_MESSAGES,
    PROTOCOL_VERSION,
    SERVER_EVENTS,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    AudioIn,
    AudioOut,
    Clear,
    ClientMessage,
    End,
    ErrorEvent,
    Interrupt,
    ProtocolError,
    Ready,
    ReplyText,
    ServerEvent,
    SessionEnd,
    Start,
    Stats,
    TextIn,
    Transcript,
    TurnEvent,
    decode_client,
    decode_server,
    encode_message,
    ws_schema,
)
from rspp.transports._session_port import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FLOOD,
    CLOSE_FORBIDDEN,
    CLOSE_TIMEOUT,
    CLOSE_TOO_LARGE,
    CLOSE_TOO_SLOW,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNAVAILABLE,
    ClientAudio,
    LiveSession,
    Outbound,
    SessionFactory,
    SessionGrant,
    SessionRefused,
    TokenRefused,
    TokenVerifier,
)
from rspp.transports._telephony import TWILIO_STREAM_PATH, TelephonyOptions, twilio_stream_route
from rspp.transports._wav import WavError, read_wav, write_wav
from rspp.transports._websocket import SESSION_PATH, SessionHub, WebSocketOptions, websocket_route

__all__ = [
    "CLIENT_MESSAGES",
    "CLOSE_BAD_REQUEST",
    "CLOSE_CONFLICT",
    "CLOSE_FLOOD",
    "CLOSE_FORBIDDEN",
    "CLOSE_TIMEOUT",
    "CLOSE_TOO_LARGE",
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAUTHORIZED",
    "CLOSE_UNAVAILABLE",
    "PROTOCOL_VERSION",
    "SERVER_EVENTS",
    "SESSION_PATH",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "TWILIO_STREAM_PATH",
    "AudioFrame",
    "AudioIn",
    "AudioOut",
    "Clear",
    "ClientAudio",
    "ClientMessage",
    "End",
    "ErrorEvent",
    "Flood",
    "IngressMeter",
    "InputRejected",
    "Interrupt",
    "LiveOptions",
    "LiveSession",
    "LiveSessionHandle",
    "LiveTransport",
    "LoopbackOptions",
    "LoopbackTransport",
    "Outbound",
    "OutboundQueue",
    "PlaybackObserver",
    "ProtocolError",
    "Ready",
    "Rechunker",
    "ReplyText",
    "ServerEvent",
    "SessionCore",
    "SessionEnd",
    "SessionFactory",
    "SessionGrant",
    "SessionHub",
    "SessionRefused",
    "Start",
    "Stats",
    "StreamResampler",
    "TelephonyOptions",
    "TextIn",
    "TokenRefused",
    "TokenVerifier",
    "Transcript",
    "Transport",
    "TurnEvent",
    "TurnOutput",
    "WavError",
    "WebSocketOptions",
    "decode_client",
    "decode_server",
    "encode_message",
    "mulaw_decode",
    "mulaw_encode",
    "parse_mark",
    "read_wav",
    "twilio_stream_route",
    "websocket_route",
    "write_wav",
    "ws_schema",
]
