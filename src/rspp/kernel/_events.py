"""The hot-path event object and its materialisation into contract records.

:class:`Event` is a plain slots class: the executor moves these between nodes
without building msgspec structs or validating anything. Contract records
(:class:`rspp.contracts.EventRecord`) are built only when something records or
sends an event (:func:`to_record`).
"""

from __future__ import annotations

from typing import Any

import msgspec

from rspp.contracts import (
    SCHEMA_VERSION,
    EventRecord,
    EventScope,
    Lane,
    MediaTime,
    PayloadClass,
)

__all__ = ["AudioFormat", "Event", "EventKind", "audio_frame", "to_record"]

#: payloads whose ``len`` is an event's size (a tuple: ``A | B`` in ``isinstance`` builds a
#: union object at every call, and every event of every session passes here)
_SIZED = (bytes, bytearray, memoryview, str)


class EventKind:
    """Well-known ``Event.kind`` values (plain strings; nodes may add their own)."""

    AUDIO_CHUNK = "audio_chunk"
    AUDIO_END = "audio_end"
    TEXT = "text"
    TURN_START = "turn_start"
    TURN_END = "turn_end"
    #: ControlLane, egress only: the turn's streams on this output ended (no ``eos``
    #: came: the kernel derived it from the graph, see ``rspp.kernel._turn_drain``)
    STREAM_END = "stream_end"
    METRIC = "metric"
    DEBUG = "debug"
    ERROR = "error"


class AudioFormat:
    """Encoding metadata of audio events (F-023); shared, immutable by convention."""

    __slots__ = ("channels", "codec", "sample_rate", "sample_width")

    def __init__(
        self, sample_rate: int = 16000, channels: int = 1, codec: str = "pcm_s16le",
        sample_width: int = 2,
    ) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.codec = codec
        self.sample_width = sample_width

    def duration_ms(self, nbytes: int) -> float:
        """Duration of ``nbytes`` of PCM in this format (0 for compressed codecs)."""
        if not self.codec.startswith("pcm"):
            return 0.0
        return nbytes * 1000.0 / (self.sample_rate * self.channels * self.sample_width)

    def __repr__(self) -> str:
        return f"AudioFormat({self.sample_rate}, {self.channels}, {self.codec!r})"


class Event:
    """One unit of data moving along edges.

    Owned by exactly one queue or handler at a time: fan-out clones it for the
    extra branches (:meth:`clone`). ``seq`` is the session's runtime sequence,
    stamped once by the session sequencer. Text events use ``final`` and
    ``revision`` (F-024); audio events use ``audio_format`` and
    ``media_time_ms`` / ``sample_index`` (F-023).
    """

    __slots__ = (
        "attrs",
        "audio_format",
        "discontinuity_id",
        "enq_ns",
        "event_id",
        "final",
        "ingress_ns",
        "kind",
        "lane",
        "merged_from",
        "node_id",
        "parent_id",
        "payload",
        "record_turn",
        "revision",
        "sample_index",
        "seq",
        "size",
        "sync_id",
        "transport_seq",
        "turn_id",
    )

    def __init__(
        self,
        kind: str,
        payload: Any = None,
        *,
        lane: Lane = Lane.DATA,
        turn_id: str | None = None,
        final: bool = True,
        revision: int = 0,
        attrs: dict[str, Any] | None = None,
        audio_format: AudioFormat | None = None,
        sample_index: int | None = None,
        sync_id: str | None = None,
        transport_seq: int | None = None,
        size: int | None = None,
    ) -> None:
        self.kind = kind
        self.payload = payload
        self.lane = lane
        self.turn_id = turn_id
        #: correlation only (F-013): the turn a record of this event names when the event
        #: belongs to no turn (``turn_id`` None); stamped by the session, never acted on
        self.record_turn: str | None = None
        self.final = final
        self.revision = revision
        self.attrs = attrs
        self.audio_format = audio_format
        self.sample_index = sample_index
        self.sync_id = sync_id
        self.transport_seq = transport_seq
        if size is None:
            size = len(payload) if isinstance(payload, _SIZED) else 0
        self.size = size
        self.seq = -1
        self.event_id: str | None = None
        self.node_id: str | None = None
        self.parent_id: str | None = None
        self.merged_from: tuple[str, ...] | None = None
        self.discontinuity_id: str | None = None
        self.enq_ns = 0
        self.ingress_ns = 0

    def clone(self) -> Event:
        """A shallow copy (payload shared) for an extra fan-out branch."""
        c = Event.__new__(Event)
        for name in Event.__slots__:
            setattr(c, name, getattr(self, name))
        return c

    def derive(self, kind: str, payload: Any, **kw: Any) -> Event:
        """A new event caused by this one (inherits turn, sync id and causality)."""
        e = Event(kind, payload, turn_id=self.turn_id, sync_id=self.sync_id, **kw)
        e.parent_id = self.event_id
        e.ingress_ns = self.ingress_ns
        return e

    def __repr__(self) -> str:
        return f"Event({self.kind!r}, seq={self.seq}, turn={self.turn_id!r}, final={self.final})"


_new_event = Event.__new__
_DATA = Lane.DATA


def audio_frame(payload: bytes, audio_format: AudioFormat | None, sample_index: int,
                transport_seq: int) -> Event:
    """``Event("audio_chunk", payload, audio_format=..., sample_index=...,
    transport_seq=...)`` for bytes: the same event, without the keyword call of a class
    with an ``__init__`` (a tuple and a dict of arguments and two calls, ~2/3 of what
    making the event costs); a live transport makes one per frame of every session."""
    e: Event = _new_event(Event)
    e.kind = "audio_chunk"
    e.payload = payload
    e.lane = _DATA
    e.turn_id = None
    e.record_turn = None
    e.final = True
    e.revision = 0
    e.attrs = None
    e.audio_format = audio_format
    e.sample_index = sample_index
    e.sync_id = None
    e.transport_seq = transport_seq
    e.size = len(payload)
    e.seq = -1
    e.event_id = None
    e.node_id = None
    e.parent_id = None
    e.merged_from = None
    e.discontinuity_id = None
    e.enq_ns = 0
    e.ingress_ns = 0
    return e


#: record templates: the envelope fields that stay the same for every event one session
#: records on one edge (see :func:`to_record`); bounded, cleared when full
_TEMPLATES: dict[tuple[Any, ...], EventRecord] = {}
_TEMPLATES_MAX = 4096
_replace = msgspec.structs.replace
_TELEMETRY = Lane.TELEMETRY
_AUDIO_RAW, _TEXT_RAW = PayloadClass.AUDIO_RAW, PayloadClass.TEXT_RAW
_METADATA = PayloadClass.METADATA
_TURN, _SESSION = EventScope.TURN, EventScope.SESSION


def to_record(
    ev: Event,
    *,
    session_id: str,
    pipeline_version: str,
    runtime_ms: int,
    wall_ms: int,
    edge_id: str | None = None,
    payload_class: PayloadClass | None = None,
    authority_epoch: int = 0,
    sync_domain: str | None = None,
    causal_parent_id: str | None = None,
    scope: str | None = None,
) -> EventRecord:
    """Materialise the contract envelope of ``ev`` (no payload body inside).

    An event of no turn (``turn_id`` None) is recorded session-scoped, its record naming
    the turn the session stamped on it (``record_turn``, F-013: the open turn, or the
    proposal its utterance leads to) for correlation only.

    ``causal_parent_id`` (default: the event's parent) and ``scope`` are set in the same
    construction (a replay tags every record; no second copy of the struct). An event
    that was not merged and starts no discontinuity (nearly all) is a copy of a cached
    template of its session, edge, payload class, lane, epoch and scope with its own
    fields set (``msgspec.structs.replace``: a fifth of a full construction; every
    recorded frame of every session passes here); the record is the same either way."""
    if payload_class is None:
        if ev.kind.startswith("audio"):
            payload_class = _AUDIO_RAW
        elif ev.kind == EventKind.TEXT:
            payload_class = _TEXT_RAW
        else:
            payload_class = _METADATA
    media_time = None
    if ev.sample_index is not None:
        media_time = MediaTime(sample_index=ev.sample_index)
    elif payload_class == _AUDIO_RAW:
        media_time = MediaTime(pts_ms=0)
    lane = _TELEMETRY if ev.lane == _TELEMETRY else Lane.DATA
    if ev.merged_from is not None or ev.discontinuity_id is not None:
        return _full_record(ev, session_id, pipeline_version, runtime_ms, wall_ms, edge_id,
                            payload_class, authority_epoch, sync_domain, causal_parent_id,
                            scope, media_time, lane)
    key = (session_id, pipeline_version, edge_id, payload_class, lane, authority_epoch, scope)
    template = _TEMPLATES.get(key)
    if template is None:
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        template = _TEMPLATES[key] = EventRecord(
            schema_version=SCHEMA_VERSION, event_scope=_SESSION, session_id=session_id,
            pipeline_version=pipeline_version, event_id="", lane=lane,
            transport_sequence=None, runtime_sequence=0, runtime_timestamp_ms=0,
            wall_clock_timestamp_ms=0, payload_class=payload_class, edge_id=edge_id,
            authority_epoch=authority_epoch, scope=scope)
    turn_id = ev.turn_id
    scope_of = _TURN
    if turn_id is None:
        scope_of = _SESSION
        turn_id = ev.record_turn
    seq = ev.seq
    return _replace(
        template,
        event_scope=scope_of,
        event_id=ev.event_id or f"{session_id}:{seq}",
        transport_sequence=ev.transport_seq,
        runtime_sequence=seq if seq > 0 else 0,
        runtime_timestamp_ms=runtime_ms,
        wall_clock_timestamp_ms=wall_ms,
        turn_id=turn_id,
        node_id=ev.node_id,
        causal_parent_id=causal_parent_id or ev.parent_id,
        sync_id=ev.sync_id,
        media_time=media_time,
    )


def _full_record(ev: Event, session_id: str, pipeline_version: str, runtime_ms: int,
                 wall_ms: int, edge_id: str | None, payload_class: PayloadClass,
                 authority_epoch: int, sync_domain: str | None, causal_parent_id: str | None,
                 scope: str | None, media_time: MediaTime | None, lane: Lane) -> EventRecord:
    """:func:`to_record` of a merged event or one that starts a discontinuity."""
    return EventRecord(
        schema_version=SCHEMA_VERSION,
        event_scope=EventScope.TURN if ev.turn_id else EventScope.SESSION,
        session_id=session_id,
        pipeline_version=pipeline_version,
        event_id=ev.event_id or f"{session_id}:{ev.seq}",
        lane=lane,
        transport_sequence=ev.transport_seq,
        runtime_sequence=max(ev.seq, 0),
        runtime_timestamp_ms=runtime_ms,
        wall_clock_timestamp_ms=wall_ms,
        payload_class=payload_class,
        turn_id=ev.turn_id or ev.record_turn,
        node_id=ev.node_id,
        edge_id=edge_id,
        causal_parent_id=causal_parent_id or ev.parent_id,
        sync_id=ev.sync_id,
        discontinuity_id=ev.discontinuity_id,
        merged_from_event_ids=ev.merged_from,
        merge_group_id=f"{edge_id or ev.node_id or 'merge'}:{ev.seq}" if ev.merged_from else None,
        sync_domain=(sync_domain or edge_id or "default") if ev.discontinuity_id else None,
        media_time=media_time,
        authority_epoch=authority_epoch,
        scope=scope,
    )
