"""Audio buffering strategy of a pipeline (F-054): ``transport.buffering``.

The strategy is the way in's: it sets every audio edge but those into ``output`` (reply
audio keeps the profile's policy; the transport paces it).

``latency_first`` keeps audio fresh: every such audio edge holds at most 100 ms (5 frames) and
sheds its oldest frames past that (``drop``: each drop leaves a ``drop_notice``), and the
live transports' jitter buffers start from the shallow ``low_latency`` profile.
``accuracy_first`` keeps every frame: audio edges block their producer instead of
dropping (10 s, 500 frames, a 2 s block bound) and the jitter buffers start from the deep
``accuracy`` profile (:data:`~rspp.spec._jitter.BUFFERING_JITTER`). The edge policies are
part of every turn plan (``edge_buffer_policies``), so the strategy is frozen per turn and
recorded with it; an edge's own ``buffer:`` and the ``jitter`` fields apply over it.
"""

from __future__ import annotations

import msgspec

from rspp.contracts import (
    BufferStrategy,
    EdgeBufferPolicy,
    EdgeWatermarks,
    WatermarkThreshold,
)

__all__ = ["buffering_audio_edge"]


def buffering_audio_edge(strategy: str | None, base: EdgeBufferPolicy) -> EdgeBufferPolicy:
    """The audio-edge policy of ``strategy`` (``base``, the profile's, when None)."""
    if strategy == "latency_first":
        return msgspec.structs.replace(
            base, strategy=BufferStrategy.DROP, max_queue_items=5, max_queue_ms=100,
            max_latency_contribution_ms=100, max_block_time_ms=None,
            watermarks=EdgeWatermarks(queue_items=WatermarkThreshold(high=4, low=1)),
            lane_handling=msgspec.structs.replace(base.lane_handling,
                                                  DataLane=BufferStrategy.DROP))
    if strategy == "accuracy_first":
        return msgspec.structs.replace(
            base, strategy=BufferStrategy.BLOCK, max_queue_items=500, max_queue_ms=10_000,
            max_queue_bytes=1_024_000, max_latency_contribution_ms=10_000,
            max_block_time_ms=2000,
            watermarks=EdgeWatermarks(queue_items=WatermarkThreshold(high=400, low=100)),
            lane_handling=msgspec.structs.replace(base.lane_handling,
                                                  DataLane=BufferStrategy.BLOCK))
    return base
