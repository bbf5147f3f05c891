"""The live-session protocol (WebSocket ``rspp.v1``): message types, codecs, JSON Schema.

Every message is a frozen msgspec struct tagged by ``type``. Client messages:
``start`` (declares the audio format; first message), ``audio`` (MessagePack
variant only: sequence number + PCM16), ``text``, ``interrupt``, ``debug`` (capture
this session's debug events for a while), ``end``.
Server events: ``ready``, ``epoch``, ``transcript``, ``turn``, ``reply_text``, ``clear``,
``audio`` (MessagePack variant), ``stats``, ``error``, ``session_end``, ``turn_row``,
``record`` (1.3: in-band records, to clients that subscribe by event type with
``start.events``). Every server
event carries the lease epoch it was produced under (protocol 1.2): ``ready`` names the
connection's epoch, an ``epoch`` event names it again whenever it changes (and
periodically while outputs flow, stamped with the runtime's send time), so every later
event, audio frames included, is of the last epoch named; ``turn`` events carry it too. The JSON
variant carries audio as binary WebSocket frames of raw PCM16 (optionally with
a 4-byte big-endian sequence number, ``start.sequenced``). The same event
vocabulary is used by every transport (WebSocket messages, WebRTC data
channel, LiveKit data). :func:`ws_schema` is the published JSON Schema
(``rspp contracts schema ws``; docs/protocol/websocket.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec

from rspp.errors import RSPPError
from rspp.observability import TurnRow

__all__ = [
    "CLIENT_MESSAGES",
    "EPOCH_MARK_MS",
    "PROTOCOL_VERSION",
    "SERVER_EVENTS",
    "SUBPROTOCOL_JSON",
    "SUBPROTOCOL_MSGPACK",
    "AudioIn",
    "AudioOut",
    "CaptureDebug",
    "Clear",
    "ClientMessage",
    "End",
    "EpochEvent",
    "ErrorEvent",
    "EventTypeName",
    "Interrupt",
    "ProtocolError",
    "Ready",
    "RecordEvent",
    "ReplyText",
    "ServerEvent",
    "SessionEnd",
    "Start",
    "Stats",
    "TextIn",
    "Transcript",
    "TurnEvent",
    "TurnRowEvent",
    "decode_client",
    "decode_server",
    "encode_message",
    "ws_schema",
]

PROTOCOL_VERSION = "1.3"
SUBPROTOCOL_JSON = "rspp.v1.json"
SUBPROTOCOL_MSGPACK = "rspp.v1.msgpack"

SampleRate = Literal[16000, 24000, 48000]
#: the six event types of the unified event ABI (``rspp.contracts.EventType``), F-022
EventTypeName = Literal["audio", "text", "control", "metrics", "debug", "error"]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class _Msg(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
           tag_field="type"):
    pass


# ------------------------------------------------------------------ client -> server
class Start(_Msg, tag="start", frozen=True, kw_only=True):
    """First client message: the audio the client sends and wants back."""

    sample_rate: SampleRate = 16000
    channels: Literal[1] = 1
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    #: reply audio rate (default: ``sample_rate``)
    output_sample_rate: SampleRate | None = None
    #: binary audio frames start with a 4-byte big-endian frame sequence number
    sequenced: bool = False
    #: also send a ``turn_row`` event whenever a turn's timeline row changes (viewers)
    timeline: bool = False
    #: free-form client name, for logs
    client: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    #: protocol 1.3, F-022: send only events of these types (None: every event, as 1.2,
    #: and no ``record`` events); ``metrics``, ``debug`` and ``error`` also bring the
    #: session's in-band records of that type as ``record`` events
    events: Annotated[list[EventTypeName], msgspec.Meta(min_length=1, max_length=6)] | None \
        = None


class AudioIn(_Msg, tag="audio", frozen=True, kw_only=True):
    """MessagePack variant: one audio frame (the JSON variant uses binary frames)."""

    seq: Annotated[int, msgspec.Meta(ge=0)]
    data: bytes


class TextIn(_Msg, tag="text", frozen=True, kw_only=True):
    """Typed user input: one user turn (pipelines with an ``input.text`` entry)."""

    text: Text
    #: idempotency key (F-158): a resend with a key the session already took (a retry,
    #: a reconnect, a failover) is dropped with a lineage marker and a ``duplicate`` error
    id: Id | None = None


class Interrupt(_Msg, tag="interrupt", frozen=True, kw_only=True):
    """Stop the reply being played now (user cancel): the turn aborts, ``clear`` follows."""


class EndOfUtterance(_Msg, tag="end_of_utterance", frozen=True, kw_only=True):
    """Push-to-talk release (F-042): the user's utterance ends here, without waiting for the
    VAD's silence; the audio sent before it goes in first."""


class CaptureDebug(_Msg, tag="debug", frozen=True, kw_only=True):
    """Record this session's debug events for ``seconds`` (F-076); other sessions keep none.

    ``seconds`` 0 ends a capture now.
    """

    seconds: Annotated[float, msgspec.Meta(ge=0, le=600)] = 60.0


class End(_Msg, tag="end", frozen=True, kw_only=True):
    """No more input: pending turns finish, then ``session_end`` and a normal close."""


ClientMessage = Start | AudioIn | TextIn | Interrupt | EndOfUtterance | CaptureDebug | End
CLIENT_MESSAGES: tuple[type[_Msg], ...] = (Start, AudioIn, TextIn, Interrupt, EndOfUtterance,
                                           CaptureDebug, End)


# ------------------------------------------------------------------ server -> client
class Ready(_Msg, tag="ready", frozen=True, kw_only=True):
    """The session accepted the connection; audio may flow."""

    protocol_version: str = PROTOCOL_VERSION
    session_id: Id
    sample_rate: int
    output_sample_rate: int
    frame_ms: int
    #: a reconnect within the resume window resumed this session
    resumed: bool = False
    #: the lease epoch this connection's outputs are produced under (served sessions);
    #: a client that saw a newer epoch for the session ignores an older connection
    lease_epoch: int | None = None


class EpochEvent(_Msg, tag="epoch", frozen=True, kw_only=True):
    """Protocol 1.2: every event after this one (audio frames included) was produced under
    lease ``lease_epoch``, until the next ``epoch`` event. Sent before the first event of a
    new epoch on a connection and again at most every ``EPOCH_MARK_MS`` while events flow;
    ``sent_at_ms`` is the runtime's wall clock (ms) when it passed its lease gate, a lower
    bound on the send time of every event after it. A client that has seen a newer epoch
    of the session refuses the outputs of an older one (fencing at the resource)."""

    lease_epoch: int
    sent_at_ms: int


class Transcript(_Msg, tag="transcript", frozen=True, kw_only=True):
    turn_id: str | None = None
    text: str
    final: bool


class TurnEvent(_Msg, tag="turn", frozen=True, kw_only=True):
    """Turn lifecycle as the arbiter decided it (``open``, ``commit``, ``abort``, ``close``)."""

    turn_id: Id
    state: Literal["open", "commit", "abort", "close"]
    reason: str | None = None
    #: the lease epoch the event was produced under (served sessions, protocol 1.2)
    lease_epoch: int | None = None


class ReplyText(_Msg, tag="reply_text", frozen=True, kw_only=True):
    """The reply's text: coalesced deltas (concatenated they are the reply), then one
    ``final`` event carrying the whole reply text."""

    turn_id: str | None = None
    text: str
    final: bool = False


class Clear(_Msg, tag="clear", frozen=True, kw_only=True):
    """Barge-in/cancel: drop every buffered audio frame of ``turn_id`` now."""

    turn_id: Id
    reason: str


class AudioOut(_Msg, tag="audio", frozen=True, kw_only=True):
    """MessagePack variant: one paced 20 ms reply frame (JSON variant: binary frames)."""

    turn_id: str | None = None
    seq: int
    data: bytes


class Stats(_Msg, tag="stats", frozen=True, kw_only=True):
    """Transport counters since the connection started (sent every second)."""

    frames_in: int = 0
    #: frames that arrived later than real time allows
    late_frames: int = 0
    #: numbered frames that arrived after a later-numbered one
    out_of_order_frames: int = 0
    #: places of numbered frames never filled in time (concealed or dropped)
    lost_frames: int = 0
    #: the jitter buffer (F-087): out-of-order frames put back in place, duplicates and
    #: frames too late for their place (both dropped), lost frames concealed, gaps
    #: dropped with a discontinuity marker
    reordered_frames: int = 0
    duplicate_frames: int = 0
    too_late_frames: int = 0
    concealed_frames: int = 0
    discontinuities: int = 0
    #: the connection's jitter profile, its current depth and the longest hold
    jitter_profile: str | None = None
    jitter_depth_ms: float = 0.0
    jitter_hold_max_ms: float = 0.0
    #: the connection's audio that entered the pipeline (concealment included)
    media_in_ms: int = 0
    frames_out: int = 0
    dropped_out_frames: int = 0
    egress_lateness_p99_ms: float = 0.0
    egress_lateness_max_ms: float = 0.0
    #: ingress audio's lateness against its media time (NF-018; p99 to its bin, max)
    media_skew_p99_ms: float = 0.0
    media_skew_max_ms: float = 0.0
    send_queue: int = 0


class ErrorEvent(_Msg, tag="error", frozen=True, kw_only=True):
    """Bad input or a failure; ``field`` names what was wrong. ``fatal``: a close follows."""

    code: str
    field: str | None = None
    message: str
    fatal: bool = False


class RecordEvent(_Msg, tag="record", frozen=True, kw_only=True):
    """Protocol 1.3 (F-022): one in-band record of the session (a TelemetryLane metrics,
    debug or error record, as the timeline holds it), only to a client whose
    ``start.events`` names its ``event_type``. Best effort: dropped, never queued past
    half the connection's event queue."""

    event_type: Literal["metrics", "debug", "error"]
    record: dict[str, Any]
    #: the body the record travels with, if any (a ``metric`` record's name, value, unit)
    payload: dict[str, Any] | None = None


class SessionEnd(_Msg, tag="session_end", frozen=True, kw_only=True):
    reason: str


class TurnRowEvent(_Msg, tag="turn_row", frozen=True, kw_only=True):
    """A turn's timeline row changed (only to clients that asked: ``start.timeline``)."""

    row: TurnRow


ServerEvent = (Ready | EpochEvent | Transcript | TurnEvent | ReplyText | Clear | AudioOut
               | Stats | ErrorEvent | SessionEnd | TurnRowEvent | RecordEvent)
SERVER_EVENTS: tuple[type[_Msg], ...] = (Ready, EpochEvent, Transcript, TurnEvent, ReplyText,
                                         Clear, AudioOut, Stats, ErrorEvent, SessionEnd,
                                         TurnRowEvent, RecordEvent)
#: an ``epoch`` event goes out again before an event once the last one is this old
EPOCH_MARK_MS = 250


def ws_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the protocol: ``client`` and ``server`` message unions."""
    (client, server), components = msgspec.json.schema_components(
        (ClientMessage, ServerEvent), ref_template="#/$defs/{name}")
    defs = dict(components)
    defs["ClientMessage"] = client
    defs["ServerEvent"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://rspp.dev/schemas/ws/v1.json",
        "title": "RSPP live-session protocol (WebSocket)",
        "description": "Client messages (ClientMessage) and server events (ServerEvent); "
                       "see docs/protocol/websocket.md.",
        "version": PROTOCOL_VERSION,
        "x-subprotocols": [SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK],
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerEvent"}],
        "$defs": defs,
    }


_JSON_CLIENT = msgspec.json.Decoder(ClientMessage)
_MSGPACK_CLIENT = msgspec.msgpack.Decoder(ClientMessage)
_JSON_SERVER = msgspec.json.Decoder(ServerEvent)
_MSGPACK_SERVER = msgspec.msgpack.Decoder(ServerEvent)
_JSON_ENC = msgspec.json.Encoder()
_MSGPACK_ENC = msgspec.msgpack.Encoder()
_AT = re.compile(r"at `\$\.?([^`]*)`")
_FIELD = re.compile(r"field `([^`]*)`")


_VALUE = re.compile(r"'[^']*'")


class ProtocolError(RSPPError):
    """A message that does not decode; ``field`` names the offending field.

    ``loggable``: ``FIELD: MESSAGE`` for the server's log, without what the client chose
    (a value it sent, the name of an unknown field it made up): the message itself goes
    back to that client only."""

    def __init__(self, message: str, field: str | None, *, loggable: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.loggable = loggable if loggable is not None else f"{field}: {message}"


def _protocol_error(exc: msgspec.MsgspecError) -> ProtocolError:
    text = str(exc)
    m = _AT.search(text)
    field = (m.group(1) or "$") if m else None
    at = field or "$"
    logged = _VALUE.sub("'…'", text)
    named = _FIELD.search(text)
    if named is not None:  # unknown or missing field: name it, under the object's path
        field = named.group(1) if field in (None, "$") else f"{field}.{named.group(1)}"
        if "unknown field" in text:  # a name the client made up: not in the log
            logged = logged.replace(named.group(0), "field `…`")
        else:
            at = field
    return ProtocolError(text, field or "$", loggable=f"{at}: {logged}")


def decode_client(data: str | bytes, *, msgpack: bool = False) -> ClientMessage:
    """Decode one client message (JSON text or MessagePack bytes); raises ProtocolError."""
    out: ClientMessage
    try:
        if msgpack:
            out = _MSGPACK_CLIENT.decode(data if isinstance(data, bytes) else data.encode())
        else:
            out = _JSON_CLIENT.decode(data)
        return out
    except msgspec.MsgspecError as exc:
        raise _protocol_error(exc) from None


def decode_server(data: str | bytes, *, msgpack: bool = False) -> ServerEvent:
    """Decode one server event (clients); raises ProtocolError."""
    out: ServerEvent
    try:
        if msgpack:
            out = _MSGPACK_SERVER.decode(data if isinstance(data, bytes) else data.encode())
        else:
            out = _JSON_SERVER.decode(data)
        return out
    except msgspec.MsgspecError as exc:
        raise _protocol_error(exc) from None


def encode_message(msg: msgspec.Struct, *, msgpack: bool = False) -> bytes:
    """Encode one protocol message (either direction)."""
    return _MSGPACK_ENC.encode(msg) if msgpack else _JSON_ENC.encode(msg)
