"""Resolved per-edge buffer configuration (runtime view of a BufferSpec).

Built from the contract :class:`rspp.contracts.EdgeBufferPolicy` plus the
plan's :class:`rspp.contracts.FlowControl`, with a few runtime refinements
the contract leaves open (which end ``drop`` sheds from, sample cadence,
per-edge flow-mode override, credit window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rspp.contracts import (
    EdgeBufferPolicy,
    EdgeWatermarks,
    FlowControl,
    Lane,
    WatermarkThreshold,
)
from rspp.errors import RuntimeKernelError

__all__ = ["BufferConfig", "BufferConfigError"]

Strategy = Literal["block", "drop", "merge", "sample", "latest_only"]
FlowModeName = Literal["signal", "credit", "hybrid"]
_STRATEGIES = ("block", "drop", "merge", "sample", "latest_only")


class BufferConfigError(RuntimeKernelError):
    """An edge buffer configuration is inconsistent."""


@dataclass(frozen=True, slots=True)
class BufferConfig:
    """Everything one edge buffer needs, already defaulted."""

    strategy: Strategy = "drop"
    max_items: int = 64
    max_bytes: int = 1 << 20
    max_queue_ms: int = 1000
    max_latency_ms: int = 1000
    max_block_ms: int | None = None
    drop_from: Literal["oldest", "newest"] = "oldest"
    sample_every: int = 2
    watermark_items: tuple[int, int] | None = None
    watermark_ms: tuple[int, int] | None = None
    watermark_action: str | None = None
    telemetry_handling: str = "best_effort_drop"
    telemetry_max_items: int = 64
    control_max_items: int = 1024
    #: the lane the edge queues data events on (the spec edge's ``lane:``, F-147):
    #: ControlLane edges serve them first and never drop them, TelemetryLane edges serve
    #: them last and shed them first; an event marked ControlLane/TelemetryLane keeps its own
    lane: Lane = Lane.DATA
    flow_mode: FlowModeName | None = None
    flow_high: int | None = None
    flow_low: int | None = None
    sync_policy: str = "no_sync"
    sync_domain: str | None = None
    fairness_key: str | None = None
    defaulting_source: str = "execution_profile_default"

    def __post_init__(self) -> None:
        if self.strategy not in _STRATEGIES:
            raise BufferConfigError(
                f"strategy={self.strategy!r} is not one of {_STRATEGIES}; "
                "fix the edge's buffer.strategy"
            )
        for name in ("max_items", "max_bytes", "max_queue_ms", "max_latency_ms", "sample_every",
                     "telemetry_max_items", "control_max_items"):
            if getattr(self, name) < 1:
                raise BufferConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.strategy == "block" and not self.max_block_ms:
            raise BufferConfigError(
                "strategy 'block' needs max_block_ms (max_block_time_ms) >= 1: "
                "blocking is always bounded"
            )
        for name in ("watermark_items", "watermark_ms"):
            wm = getattr(self, name)
            if wm is not None and not (wm[0] > wm[1] >= 0):
                raise BufferConfigError(f"{name}={wm}: need high > low >= 0")

    @classmethod
    def from_policy(
        cls, policy: EdgeBufferPolicy, flow: FlowControl | None = None, **overrides: object
    ) -> BufferConfig:
        """Resolve a contract policy (plus plan-wide flow control) to a config."""
        wm: EdgeWatermarks = policy.watermarks
        kw: dict[str, object] = {
            "strategy": str(policy.strategy),
            "max_items": policy.max_queue_items,
            "max_bytes": policy.max_queue_bytes,
            "max_queue_ms": policy.max_queue_ms,
            "max_latency_ms": policy.max_latency_contribution_ms,
            "max_block_ms": policy.max_block_time_ms,
            "watermark_items": _pair(wm.queue_items),
            "watermark_ms": _pair(wm.queue_ms),
            "telemetry_handling": str(policy.lane_handling.TelemetryLane),
            "fairness_key": policy.fairness_key,
            "defaulting_source": str(policy.defaulting_source),
        }
        if policy.sync_drop_policy is not None:
            kw["sync_policy"] = str(policy.sync_drop_policy.policy)
            kw["sync_domain"] = policy.sync_drop_policy.sync_domain
        if flow is not None:
            kw["flow_mode"] = str(flow.mode_by_lane.DataLane)
            kw["flow_high"] = flow.watermarks.DataLane.high
            kw["flow_low"] = flow.watermarks.DataLane.low
            kw["watermark_action"] = str(flow.shedding_strategy_by_lane.DataLane)
        kw.update(overrides)
        return cls(**kw)  # type: ignore[arg-type]


def _pair(t: WatermarkThreshold | None) -> tuple[int, int] | None:
    return None if t is None else (t.high, t.low)
