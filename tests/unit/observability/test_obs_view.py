"""Timeline view: ordering, node labels, lane colours, filters (F-074)."""

from __future__ import annotations

import pytest

from rspp.contracts import Lane, PayloadClass
from rspp.observability import (
    TimelineBuilder,
    TimelineFilter,
    as_lines,
    compare_timelines,
    filter_lines,
    timeline_table,
    timeline_text,
)

pytestmark = pytest.mark.unit


def _lines() -> TimelineBuilder:
    b = TimelineBuilder()
    b.turn("t1")
    b.turn("t2", cancel_fence_ms=20)
    b.event(None, lane=Lane.TELEMETRY, payload_class=PayloadClass.METADATA, node_id="vad",
            reason="queue_depth")
    return b


def test_rows_are_ordered_by_time_with_plans_kept_in_place() -> None:
    lines = as_lines(list(reversed(_lines().lines())))  # file order must not matter
    shown = filter_lines(lines, TimelineFilter())
    stamps = [ln.record.get("runtime_sequence") for ln in shown if "runtime_sequence" in ln.record]
    assert stamps == sorted(stamps)
    table = timeline_table(shown)
    assert table.row_count == len(lines)
    text = list(timeline_text(shown, title="t"))  # the piped form: same rows, same cells
    assert text[0] == "t" and text[1].split() == ["line", "t", "ms", "seq", "session", "turn",
                                                  "lane", "node", "type", "detail"]
    assert len(text) == 3 + len(lines)
    for row, cells in zip(text[3:], zip(*(c._cells for c in table.columns), strict=True),
                          strict=True):
        at = 0
        for cell in cells:  # every cell of the table row, in column order
            at = row.index(str(cell), at) + len(str(cell))


def test_lane_colours_and_node_labels() -> None:
    shown = filter_lines(as_lines(_lines().lines()), TimelineFilter(turn="t2"))
    table = timeline_table(shown)
    styles = {str(ln.record.get("lane")): row.style for ln, row in zip(shown, table.rows,
                                                                        strict=True)}
    assert styles["ControlLane"] == "bold red" and styles["DataLane"] == "green"
    assert styles["None"] == "magenta"  # plan / evidence lines
    node_column = table.columns[6]
    assert {"RK-03", "RK-16", "llm", "tts"} <= set(node_column._cells)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (TimelineFilter(type="cancel"), 1),
        (TimelineFilter(type="commit"), 1),
        (TimelineFilter(node="llm"), 2),
        (TimelineFilter(lane="telemetry"), 1),
        (TimelineFilter(lane="DataLane", turn="t1"), 2),
        (TimelineFilter(session="other"), 0),
        (TimelineFilter(type="or02_evidence"), 2),
    ],
)
def test_filters(spec: TimelineFilter, expected: int) -> None:
    assert len(filter_lines(as_lines(_lines().lines()), spec)) == expected


def test_comparator_ignores_best_effort_telemetry() -> None:
    with_telemetry = _lines().lines()
    without = [ln for ln in with_telemetry if ln["record"].get("lane") != "TelemetryLane"]  # type: ignore[union-attr]
    assert len(without) < len(with_telemetry)
    assert compare_timelines(with_telemetry, without).findings == ()
