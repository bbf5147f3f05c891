"""Pressure handling of an edge buffer: watermarks, plan actions, flow control (F-144, F-145).

Mixed into :class:`~rspp.kernel._buffer.EdgeBuffer`; only runs when a watermark
or flow-control mode is configured, never per event otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rspp.contracts import Emitter, Lane, SignalName

if TYPE_CHECKING:
    from rspp.kernel._bufferspec import BufferConfig
    from rspp.kernel._events import Event
    from rspp.kernel._handles import Clock
    from rspp.kernel._signals import SignalLog

__all__ = ["PressureMixin"]

_NS_PER_MS = 1_000_000


class PressureMixin:
    """Watermark crossings, the plan's shedding action and signal/credit/hybrid flow."""

    edge_id: str
    config: BufferConfig
    signals: SignalLog
    clock: Clock
    data: deque[Event]
    nbytes: int
    stats: Any
    credits: int
    on_pressure: list[Callable[[Any, str], None]]
    _above_items: bool
    _above_ms: bool
    _xoff: bool
    _gated: bool
    _consumed_since_grant: int

    if TYPE_CHECKING:  # provided by EdgeBuffer

        def _drop(self, ev: Event, reason: str) -> None: ...

        def _pop_sheddable(self, enqueued_before: int | None = None, *,
                           keep_newest: bool = False) -> Event | None: ...

        def _note_drop(self, ev: Event, reason: str, lane: Lane = Lane.DATA) -> None: ...

        def flush_notices(self) -> None: ...

    # ------------------------------------------------------- watermarks / flow
    def _check_watermarks(self, now: int) -> None:
        cfg = self.config
        wi = cfg.watermark_items
        if wi is not None:
            n = len(self.data)
            if not self._above_items and n >= wi[0]:
                self._above_items = True
                self._crossed("high", "queue_items")
            elif self._above_items and n <= wi[1]:
                self._above_items = False
                self._crossed("low", "queue_items")
        wm = cfg.watermark_ms
        if wm is not None:
            age = (now - self.data[0].enq_ns) // _NS_PER_MS if self.data else 0
            if not self._above_ms and age >= wm[0]:
                self._above_ms = True
                self._crossed("high", "queue_ms")
            elif self._above_ms and age <= wm[1]:
                self._above_ms = False
                self._crossed("low", "queue_ms")

    def _crossed(self, level: str, metric: str) -> None:
        action = self.config.watermark_action
        self.signals.signal(
            SignalName.WATERMARK, Emitter.RK_13, edge_id=self.edge_id, target_lane=Lane.DATA,
            reason=f"{level}_watermark_crossed:{metric}"
            + (f":{action}" if action and level == "high" else ""),
        )
        if level != "high" or action is None:
            return
        low = (self.config.watermark_items or (0, 0))[1]
        if action == "drop":
            while len(self.data) > low and (old := self._pop_sheddable()) is not None:
                self._drop(old, "watermark_shed")
        elif action == "latest_only":
            while (len(self.data) > 1
                   and (old := self._pop_sheddable(keep_newest=True)) is not None):
                self._drop(old, "watermark_latest_only")
        elif action == "merge":
            self._coalesce_all()
        elif action in ("degrade", "fallback"):
            name = SignalName.DEGRADE if action == "degrade" else SignalName.FALLBACK
            self.signals.signal(name, Emitter.RK_13, edge_id=self.edge_id,
                                reason=f"watermark_{metric}")
        for cb in self.on_pressure:
            cb(self, action)
        self.flush_notices()
        if action in ("drop", "latest_only", "merge"):
            self._check_watermarks(self.clock.monotonic_ns())

    def _coalesce_all(self) -> None:
        """Watermark action ``merge``: keep only the newest of each run of mergeable partials."""
        kept: deque[Event] = deque()
        for e in self.data:
            prev = kept[-1] if kept else None
            if prev is not None and not prev.final and prev.kind == e.kind and (
                (prev.attrs or {}).get("segment") == (e.attrs or {}).get("segment")
            ):
                kept.pop()
                self.nbytes -= prev.size
                e.merged_from = (*(prev.merged_from or (prev.event_id or str(prev.seq),)),
                                 e.event_id or str(e.seq))[-64:]
                self.stats.merged += 1
                self._note_drop(prev, "watermark_merged")
            kept.append(e)
        self.data = kept

    def _after_pop(self) -> None:
        cfg = self.config
        if self._gated:
            n = len(self.data)
            if self._xoff and n <= (cfg.flow_low or 0):
                self._xoff = False
                self.signals.signal(SignalName.FLOW_XON, Emitter.RK_14, edge_id=self.edge_id,
                                    target_lane=Lane.DATA, reason="low_watermark_reached")
            if cfg.flow_mode != "signal":
                self._consumed_since_grant += 1
                batch = max(1, (cfg.flow_high or 1) - (cfg.flow_low or 0))
                if self._consumed_since_grant >= batch or not self.data:
                    amount = self._consumed_since_grant
                    self._consumed_since_grant = 0
                    self.credits += amount
                    self.signals.signal(SignalName.CREDIT_GRANT, Emitter.RK_14,
                                        edge_id=self.edge_id, target_lane=Lane.DATA, amount=amount)
        self._check_watermarks(self.clock.monotonic_ns())

