"""The Twilio Media Streams wire protocol (the de-facto standard other carriers imitate).

Carrier -> server (JSON text frames, tagged by ``event``): ``connected``, ``start``
(stream and call ids, the media format, ``customParameters`` from the TwiML
``<Parameter>`` elements), ``media`` (base64 mu-law 8 kHz mono), ``dtmf``, ``mark``
(the echo of a mark the server sent, once the audio before it has played or was
cleared), ``stop``. Server -> carrier: ``media``, ``mark``, ``clear``.

Carriers add fields over time, so unknown fields are ignored; an unknown ``event``
or a missing field is a :class:`~rspp.transports.ProtocolError` naming it.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Annotated

import msgspec

from rspp.transports._protocol import ProtocolError, _protocol_error

__all__ = [
    "CarrierMessage",
    "CarrierWriter",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "StreamStart",
    "StreamStop",
    "carrier_error",
    "decode_carrier",
    "decode_carrier_raw",
    "decode_payload",
]

Short = Annotated[str, msgspec.Meta(max_length=200)]
Param = Annotated[str, msgspec.Meta(max_length=4000)]


class _Event(msgspec.Struct, frozen=True, kw_only=True, rename="camel", tag_field="event",
             gc=False):
    """A carrier message; wire names are camelCase (``streamSid``).

    Not tracked by the garbage collector (``gc=False``): a decoded message holds only
    strings, numbers and other messages' parts, never a reference cycle, and 50 ``media``
    messages a second per call would otherwise each count towards a collection.
    Every message also carries ``sequenceNumber`` (and, after ``connected``,
    ``streamSid``): nothing reads them, so they are not decoded (the stream id is the
    ``start`` message's).
    """


class Connected(_Event, tag="connected", frozen=True, kw_only=True):
    protocol: Short | None = None
    version: Short | None = None


class MediaFormat(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    encoding: Short
    sample_rate: int
    channels: int = 1


class StartInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    stream_sid: Short
    call_sid: Short
    account_sid: Short | None = None
    tracks: Annotated[list[Short], msgspec.Meta(max_length=4)] = []
    media_format: MediaFormat
    custom_parameters: Annotated[dict[Short, Param], msgspec.Meta(max_length=32)] = {}


class StreamStart(_Event, tag="start", frozen=True, kw_only=True):
    start: StartInfo


class MediaInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    #: the mu-law bytes: the JSON string is strict base64 (padding required, only its
    #: alphabet), decoded with the message; its size is checked against the endpoint's limit
    payload: bytes
    track: Short | None = None
    #: the carrier's chunk number (a decimal string, 1-based): the jitter buffer's order
    chunk: Short | None = None


class Media(_Event, tag="media", frozen=True, kw_only=True, gc=False):
    media: MediaInfo


class DtmfInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    digit: Annotated[str, msgspec.Meta(pattern=r"^[0-9*#A-Da-d]$")]
    track: Short | None = None


class Dtmf(_Event, tag="dtmf", frozen=True, kw_only=True):
    dtmf: DtmfInfo


class MarkInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    name: Short


class Mark(_Event, tag="mark", frozen=True, kw_only=True):
    mark: MarkInfo


class StopInfo(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    call_sid: Short | None = None
    account_sid: Short | None = None


class StreamStop(_Event, tag="stop", frozen=True, kw_only=True):
    stop: StopInfo | None = None


CarrierMessage = Connected | StreamStart | Media | Dtmf | Mark | StreamStop
_DECODER = msgspec.json.Decoder(CarrierMessage)
_ENC = msgspec.json.Encoder()


#: the decoder's own ``decode`` (the per-message path): raises msgspec's errors, which
#: :func:`carrier_error` names
decode_carrier_raw: Callable[[str | bytes], CarrierMessage] = _DECODER.decode


def carrier_error(exc: msgspec.MsgspecError) -> ProtocolError:
    """The ProtocolError of a message that does not decode, naming the field (a ``media``
    payload that is not strict base64: ``media payload is not base64``)."""
    err = _protocol_error(exc)
    if err.field == "media.payload" and "base64" in str(err):
        return ProtocolError("media payload is not base64", "media.payload")
    return err


def decode_carrier(text: str | bytes) -> CarrierMessage:
    """Decode one carrier message; raises ProtocolError naming the field."""
    try:
        message: CarrierMessage = _DECODER.decode(text)
        return message
    except msgspec.MsgspecError as exc:
        raise carrier_error(exc) from None


def decode_payload(media: Media, max_bytes: int) -> bytes:
    """The mu-law bytes of a ``media`` message; raises ProtocolError (over ``max_bytes``)."""
    payload = media.media.payload
    if len(payload) > max_bytes:
        raise ProtocolError(f"media payload over {max_bytes} bytes", "media.payload")
    return payload


class CarrierWriter:
    """The server's messages of one stream (``media``, ``mark``, ``clear``).

    The JSON around the stream id is encoded once per call; a 20 ms ``media`` message
    is then the base64 payload between two prebuilt strings (the same text as encoding
    the message object, key order included).
    """

    __slots__ = ("_clear", "_mark", "_media")

    def __init__(self, stream_sid: str) -> None:
        sid = _ENC.encode(stream_sid).decode()
        self._media = '{"event":"media","streamSid":' + sid + ',"media":{"payload":"'
        self._mark = '{"event":"mark","streamSid":' + sid + ',"mark":{"name":'
        self._clear = '{"event":"clear","streamSid":' + sid + "}"

    def media(self, mulaw: bytes) -> str:
        return self._media + binascii.b2a_base64(mulaw, newline=False).decode("ascii") + '"}}'

    def mark(self, name: str) -> str:
        return self._mark + _ENC.encode(name).decode() + "}}"

    def clear(self) -> str:
        return self._clear

