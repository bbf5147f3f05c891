"""The end of a turn's streams, derived from the graph (truth table T6 without an ``eos``).

A reply built by an LLM ends explicitly: the LLM closes its text with an ``eos``
marker and the TTS turns it into ``audio_end``. A reply that is not an LLM's (an
echo ``stt.final -> tts.text``, an STT-only graph, the final transcript fanned out
to one more output) has no such marker, and no node may be sent one: a second,
empty event of the turn is data every downstream node would see.

Instead a node flags the *last* event it emits for a turn on a port
(``attrs[LAST_OF_TURN]``, set by the STT on its final transcript). The kernel then
watches the part of the graph downstream of that port: once no node of it holds
(queued, blocked or in flight) an event of that turn, every output port reachable
from the port gets a ControlLane :data:`~rspp.kernel.EventKind.STREAM_END` event of
the turn. Nodes never see it (it goes to the egress only); transports end the
turn's reply on it as they do on ``eos``. The point is derived from data flow
only (checked when the flag is emitted and each time a node of the watched part
finished an event of the turn), never from time, so a replay reaches it at the
same place; the marker takes no runtime sequence number and is not recorded.
Work a node does for an event is done when its ``process`` returns (the Node API
contract), which is what makes "nothing in flight" mean "nothing more to come".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from rspp.contracts import Lane
from rspp.kernel._events import Event, EventKind

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rspp.kernel._buffer import EdgeBuffer
    from rspp.kernel._graph import NodeDecl

__all__ = ["LAST_OF_TURN", "DrainHost", "DrainSession", "TurnDrains"]

#: the attribute a node sets on the last event it emits for a turn on a port
LAST_OF_TURN = "last_of_turn"

_INLINE, _BUFFERED, _EXIT = 0, 1, 2


class DrainHost(Protocol):
    """What the drain watch reads of a node host (``NodeHost``, which calls it)."""

    node_id: str
    decl: NodeDecl
    current: Event | None
    buffers: list[tuple[EdgeBuffer, str]]
    #: port -> routing targets ``(kind, host|buffer|exit, port, condition, edge id)``
    outs: dict[str, tuple[tuple[int, Any, str, Any, str], ...]]


class DrainSession(Protocol):
    """What the drain watch uses of the session (the ``SessionActor``)."""

    @property
    def hosts(self) -> Mapping[str, DrainHost]: ...

    @property
    def blocked(self) -> list[tuple[EdgeBuffer, Event]]: ...

    def stream_end(self, port: str, ev: Event) -> None: ...


class _Watch:
    __slots__ = ("exits", "hosts")

    def __init__(self, hosts: tuple[DrainHost, ...], exits: tuple[str, ...]) -> None:
        self.hosts = hosts
        self.exits = exits


class TurnDrains:
    """The drain watches of one session's turns (see the module docstring)."""

    __slots__ = ("_owner", "_reach", "armed", "session")

    def __init__(self, session: DrainSession) -> None:
        self.session = session
        #: turn id -> the watches still waiting for the turn to drain
        self.armed: dict[str, list[_Watch]] = {}
        self._reach: dict[tuple[str, str], _Watch] = {}
        self._owner: dict[int, DrainHost] | None = None

    def _host_of(self, buf: EdgeBuffer) -> DrainHost | None:
        if self._owner is None:
            self._owner = {id(b): h for h in self.session.hosts.values() for b, _ in h.buffers}
        return self._owner.get(id(buf))

    def _downstream(self, host: DrainHost, port: str) -> _Watch:
        """The nodes and output ports reachable from ``host``'s ``port`` (cached)."""
        key = (host.node_id, port)
        w = self._reach.get(key)
        if w is not None:
            return w
        hosts: dict[str, DrainHost] = {}
        exits: set[str] = set()
        todo = list(host.outs.get(port, ()))
        while todo:
            kind, obj, p, _, _ = todo.pop()
            if kind == _EXIT:
                exits.add(p)
                continue
            h = obj if kind == _INLINE else self._host_of(obj)
            if h is None or h.node_id in hosts:
                continue
            hosts[h.node_id] = h
            for targets in h.outs.values():
                todo.extend(targets)
            fb = h.decl.fallback
            if fb is not None and fb not in hosts:
                fbh = self.session.hosts[fb]
                hosts[fb] = fbh
                for targets in fbh.outs.values():
                    todo.extend(targets)
        w = self._reach[key] = _Watch(tuple(hosts[k] for k in sorted(hosts)),
                                      tuple(sorted(exits)))
        return w

    def arm(self, host: DrainHost, port: str, turn_id: str | None) -> None:
        """``host`` emitted its last event of ``turn_id`` on ``port`` (already routed)."""
        if turn_id is None:
            return
        w = self._downstream(host, port)
        if not w.exits:
            return
        self.armed.setdefault(turn_id, []).append(w)
        self.check(turn_id)

    def forget(self, turn_id: str | None) -> None:
        """The turn ended or was cancelled: nothing more to end for it."""
        if turn_id is not None:
            self.armed.pop(turn_id, None)

    def check(self, turn_id: str | None) -> None:
        """End the streams of every watch of ``turn_id`` whose part of the graph drained."""
        watches = self.armed.get(turn_id) if turn_id is not None else None
        if not watches or turn_id is None:
            return
        left = [w for w in watches if self._holds(w, turn_id)]
        done = [w for w in watches if w not in left]
        if left:
            self.armed[turn_id] = left
        else:
            del self.armed[turn_id]
        for w in done:
            for port in w.exits:
                ev = Event(EventKind.STREAM_END, None, lane=Lane.CONTROL, turn_id=turn_id)
                self.session.stream_end(port, ev)

    def _holds(self, w: _Watch, turn_id: str) -> bool:
        """Some node of ``w`` still has an event of ``turn_id`` queued or in flight."""
        for h in w.hosts:
            cur = h.current
            if cur is not None and cur.turn_id == turn_id:
                return True
            for b, _ in h.buffers:
                for q in (b.data, b.control, b.telemetry):  # (a TelemetryLane edge's data)
                    for e in q:
                        if e.turn_id == turn_id:
                            return True
        if self.session.blocked:
            owners = {id(b) for h in w.hosts for b, _ in h.buffers}
            for b, e in self.session.blocked:
                if e.turn_id == turn_id and id(b) in owners:
                    return True
        return False
