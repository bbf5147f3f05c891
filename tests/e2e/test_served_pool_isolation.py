"""Unaffected nodes before vs during a saturated LLM pool, against thresholds (F-109).

The small run of ``benchmarks/pool_saturation.py``: ``rspp serve --pool-limit llm=1``
serving an LLM chat and an echo pipeline without an LLM node. Echo clients (closed loop)
measure the echo pipeline's latency and throughput with the LLM pool idle, then while
it is saturated (one call held by the stalled fake OpenAI server, three queued:
``rspp_pool_waiting{key="llm"}`` reads 3 before and after the phase). Every echo line is
answered in both phases, the held call's interruption lets every queued question be
answered, and the measurements are checked against the thresholds given: generous ones
pass, a latency bound no served turn can meet fails naming its check.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from pool_saturation import Thresholds, checks, measure

pytestmark = pytest.mark.e2e

QUEUED = 3


def test_a_saturated_llm_pool_leaves_other_pipelines_within_their_thresholds(
    tmp_path: Path
) -> None:
    generous = Thresholds(max_p95_ms=60000, max_p95_ratio=100, min_throughput_ratio=0.01)
    r = asyncio.run(asyncio.wait_for(measure(tmp_path, 2, 5, QUEUED, generous), 110))
    pool = r["pool"]
    # the LLM pool was saturated for the whole "during" phase, then drained
    assert pool["limit"] == 1 and pool["waiting_at_start"] == pool["waiting_at_end"] == QUEUED
    assert pool["queued_answered_after_release"] == QUEUED
    # the echo pipeline answered every line in both phases
    for phase in ("before", "during"):
        assert r[phase]["turns"] == r[phase]["of"] == 10, r
        assert r[phase]["throughput_per_s"] > 0 and r[phase]["p95_ms"] > 0, r
    assert r["pass"] is True and all(r["checks"].values()), r
    # the same measurements against a latency bound no served turn meets
    tight = checks(r["before"], r["during"], Thresholds(max_p95_ms=0.001, max_p95_ratio=100,
                                                        min_throughput_ratio=0.01))
    assert [name for name, ok in tight.items() if not ok] == ["during_p95_ms"], tight
