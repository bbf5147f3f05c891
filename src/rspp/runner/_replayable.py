"""What the local runner records so that ``rspp replay`` can re-run its timeline (F-127, OR-03).

A replayable timeline (see :mod:`rspp.replay._source`) needs:

* every ingress event as an ``event_record`` without ``node_id`` on edge
  ``input.<port>`` with its payload, encoded *before* the push (inline nodes may
  annotate the event) - the loopback transport does this with
  :func:`~rspp.replay._codec.encode_event`; audio payloads are kept
  at recording level L2;
* every output of a provider node (``stt``/``llm``/``tts``) on edge
  ``<node>.<port>`` with causal parent ``<node>#in<k>`` (the k-th input of the
  node) and its payload - :class:`ReplayableCapture` wraps the provider node
  types through a :class:`~rspp.replay._nodes.ReplayRegistry`;
* the outputs on ``output.<port>`` (the loopback transport records them).

The runner turns the capture on with ``RunOptions.record_level`` (``rspp run
--record-level L2``); without it the runner records at the plan's level and
provider outputs are not captured.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from rspp.contracts import RecordingLevel
from rspp.errors import RSPPError
from rspp.kernel import Event, NodeRegistry, SessionActor, default_registry, to_record
from rspp.replay._codec import encode_event
from rspp.replay._nodes import ReplayRegistry, recording_class
from rspp.replay._rig import DEFAULT_PROVIDER_NODE_TYPES

__all__ = ["RECORD_LEVELS", "ReplayableCapture", "parse_record_level"]

RecordSink = Callable[[msgspec.Struct, object], None]
RECORD_LEVELS = tuple(lv.value for lv in RecordingLevel)


def parse_record_level(value: str | None) -> RecordingLevel | None:
    """``"L2"`` -> :class:`RecordingLevel`; ``None`` stays None (the plan's level)."""
    if value is None:
        return None
    try:
        return RecordingLevel(value.upper())
    except ValueError:
        raise RSPPError(f"--record-level {value!r}: use one of {', '.join(RECORD_LEVELS)} "
                        "(L2 keeps audio payloads, needed to replay audio input)") from None


class ReplayableCapture:
    """Records provider-node outputs of one runner session for replay (module docstring)."""

    def __init__(self, record: RecordSink, *, base: NodeRegistry | None = None,
                 provider_node_types: frozenset[str] = DEFAULT_PROVIDER_NODE_TYPES) -> None:
        self._record = record
        self.registry = ReplayRegistry(base or default_registry, provider_node_types,
                                       lambda c: recording_class(c, self.log_output))
        self.session: SessionActor | None = None
        self.captured = 0

    def bind(self, session: SessionActor) -> None:
        """The session whose time base, identity and epoch the records carry."""
        self.session = session

    def log_output(self, node_id: str, port: str, ev: Event, ordinal: int) -> None:
        """One provider-node output: edge ``<node>.<port>``, parent ``<node>#in<ordinal>``."""
        s = self.session
        if s is None:
            return
        payload_class, payload = encode_event(ev)
        rec = to_record(ev, session_id=s.session_id, pipeline_version=s.pipeline_version,
                        runtime_ms=s.timebase.runtime_ms(), wall_ms=s.timebase.wall_ms(),
                        edge_id=f"{node_id}.{port}", payload_class=payload_class,
                        authority_epoch=s.signals.authority_epoch)
        rec = msgspec.structs.replace(rec, causal_parent_id=f"{node_id}#in{ordinal}")
        self.captured += 1
        self._record(rec, payload)
