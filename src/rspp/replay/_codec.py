"""Event <-> timeline payload codec used by the replay rig and engine.

A recorded :class:`~rspp.kernel.Event` becomes an ``event_record`` plus a
contract payload; replay turns the pair back into an Event:

* ``bytes`` payloads -> :class:`AudioPayload` (``end_of_stream`` marks ``audio_end``
  or an ``eos`` attribute);
* ``str`` payloads -> :class:`TextPayload` (``is_final``/``revision`` from the
  event); an event kind other than ``text`` or any ``attrs`` are kept as compact
  JSON in ``segment_id`` prefixed ``evt:`` (the only free slot of the payload);
* anything else -> :class:`DebugPayload` (``message`` = event kind, ``fields``
  ``attrs``/``payload`` as JSON).

Audio bytes are raw in MessagePack timelines and base64 in JSON Lines; both decode.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from rspp.contracts import AudioPayload, DebugPayload, PayloadClass, TextPayload
from rspp.kernel import AudioFormat, Event, EventKind

__all__ = ["compared_payload", "decode_event", "encode_event"]

_META = "evt:"
_json = msgspec.json.Encoder(order="sorted")
_AUDIO_KINDS = (EventKind.AUDIO_CHUNK, EventKind.AUDIO_END)


def _meta(kind: str, default_kind: str, attrs: dict[str, Any] | None) -> str | None:
    body: dict[str, Any] = {}
    if kind != default_kind:
        body["kind"] = kind
    if attrs:
        body["attrs"] = attrs
    return _META + _json.encode(body).decode() if body else None


def encode_event(ev: Event) -> tuple[PayloadClass, AudioPayload | TextPayload | DebugPayload]:
    """The payload class and contract payload recording ``ev`` faithfully."""
    p = ev.payload
    if isinstance(p, bytes | bytearray | memoryview) and ev.kind in _AUDIO_KINDS:
        fmt = ev.audio_format or AudioFormat()
        eos = ev.kind == EventKind.AUDIO_END or bool((ev.attrs or {}).get("eos"))
        extra = {k: v for k, v in (ev.attrs or {}).items() if k != "eos"}
        if extra:  # attributes an AudioPayload cannot carry: keep them as debug fields;
            # the record stays ``audio_raw`` so privacy classes and levels still apply
            return PayloadClass.AUDIO_RAW, _debug(ev)
        return PayloadClass.AUDIO_RAW, AudioPayload(
            sample_rate_hz=fmt.sample_rate, channels=fmt.channels, data=bytes(p),
            end_of_stream=eos)
    if isinstance(p, str):
        seg = _meta(ev.kind, EventKind.TEXT, ev.attrs)
        text = TextPayload(text=p, is_final=ev.final, revision=ev.revision,
                           **({"segment_id": seg} if seg else {}))
        return PayloadClass.TEXT_RAW, text
    return PayloadClass.METADATA, _debug(ev)


def compared_payload(ev: Event) -> tuple[PayloadClass, TextPayload | None]:
    """:func:`encode_event` for a timeline that is only compared: the payload class, and
    the payload only where the comparator reads it (text); audio bytes are not copied."""
    p = ev.payload
    if isinstance(p, str):
        payload_class, text = encode_event(ev)
        return payload_class, text if isinstance(text, TextPayload) else None
    if isinstance(p, _BUFFERS) and ev.kind in _AUDIO_KINDS:
        return PayloadClass.AUDIO_RAW, None
    return PayloadClass.METADATA, None


#: (a tuple: ``A | B`` in ``isinstance`` builds a union at every call; once per frame here)
_BUFFERS = (bytes, bytearray, memoryview)


def _debug(ev: Event) -> DebugPayload:
    fields: dict[str, str] = {}
    if ev.attrs:
        fields["attrs"] = _json.encode(ev.attrs).decode()
    p = ev.payload
    if isinstance(p, bytes | bytearray | memoryview):
        fields["bytes_b64"] = base64.b64encode(bytes(p)).decode()
        fmt = ev.audio_format or AudioFormat()
        fields["format"] = f"{fmt.sample_rate}/{fmt.channels}/{fmt.codec}"
    elif p is not None:
        fields["payload"] = _json.encode(p).decode()
    return DebugPayload(message=ev.kind or "event", fields=fields)


def _bytes(value: object, where: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:  # strict: only the base64 alphabet and proper padding (b64decode's validate)
            return binascii.a2b_base64(value, strict_mode=True)
        except ValueError as exc:
            raise ValueError(f"{where}: audio data is not valid base64") from exc
    raise ValueError(f"{where}: audio data must be bytes or base64 text")


#: the formats of decoded audio (AudioFormat is shared and immutable: one per format, not
#: one per frame)
_FORMATS: dict[tuple[int, int, str], AudioFormat] = {}


def decode_event(record: dict[str, Any], payload: dict[str, Any], where: str) -> Event:
    """Rebuild the Event a recorded ``(record, payload)`` pair describes.

    Raises ``ValueError`` naming ``where`` (file:line) and the bad field.
    """
    sample_index = (record.get("media_time") or {}).get("sample_index")
    final = True
    revision = 0
    if "data" in payload and "sample_rate_hz" in payload:
        data = _bytes(payload["data"], where)
        eos = bool(payload.get("end_of_stream"))
        key = (int(payload["sample_rate_hz"]), int(payload.get("channels", 1)),
               str(payload.get("encoding", "pcm_s16le")))
        fmt = _FORMATS.get(key)
        if fmt is None:
            if len(_FORMATS) >= 64:
                _FORMATS.clear()
            fmt = _FORMATS[key] = AudioFormat(*key)
        kind = EventKind.AUDIO_END if eos else EventKind.AUDIO_CHUNK
        return Event(kind, data, audio_format=fmt, sample_index=sample_index)
    if "text" in payload:
        text = payload["text"]
        if not isinstance(text, str):
            raise ValueError(f"{where}: payload.text must be a string")
        kind, attrs = EventKind.TEXT, None
        seg = payload.get("segment_id")
        if isinstance(seg, str) and seg.startswith(_META):
            try:
                meta = msgspec.json.decode(seg[len(_META):])
            except msgspec.DecodeError as exc:
                raise ValueError(f"{where}: payload.segment_id carries invalid JSON") from exc
            kind = str(meta.get("kind", kind))
            attrs = meta.get("attrs")
        final = bool(payload.get("is_final", True))
        revision = int(payload.get("revision", 0))
        return Event(kind, text, final=final, revision=revision, attrs=attrs,
                     sample_index=sample_index)
    if "message" in payload:
        fields = payload.get("fields") or {}
        attrs = msgspec.json.decode(fields["attrs"]) if "attrs" in fields else None
        if "bytes_b64" in fields:
            rate, channels, codec = str(fields.get("format", "16000/1/pcm_s16le")).split("/")
            return Event(str(payload["message"]), _bytes(fields["bytes_b64"], where),
                         attrs=attrs, audio_format=AudioFormat(int(rate), int(channels), codec),
                         sample_index=sample_index)
        body = msgspec.json.decode(fields["payload"]) if "payload" in fields else None
        return Event(str(payload["message"]), body, attrs=attrs, sample_index=sample_index)
    raise ValueError(f"{where}: payload is neither audio, text nor debug; cannot rebuild the event")
