"""The recorded cancellation flushes a replay emits as given (see ``rspp.kernel._flushes``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rspp.contracts import Lane
from rspp.kernel._flushes import FlushNotice, RecordedFlushes
from rspp.observability._timeline_io import TimelineLine

__all__ = ["FLUSH_FIELDS", "recorded_flushes"]

#: the fields of a recorded ``drop_notice`` a replay re-emits (a streamed recording keeps them)
FLUSH_FIELDS = ("signal", "turn_id", "reason", "edge_id", "target_lane", "seq_range",
                "runtime_sequence")
_LANES = frozenset(lane.value for lane in Lane)


def recorded_flushes(lines: Iterable[TimelineLine]) -> RecordedFlushes:
    """``(turn_id, reason) ->`` the recording's ``drop_notice`` records of that turn with
    that reason (a cancel's flush carries the cancel's reason), each served once."""
    found: dict[tuple[str, str], list[tuple[int, int, FlushNotice]]] = {}
    for ln in lines:
        rec = ln.record
        tid, reason, edge = rec.get("turn_id"), rec.get("reason"), rec.get("edge_id")
        rng = rec.get("seq_range")
        if ln.kind != "control_signal" or rec.get("signal") != "drop_notice" \
                or not isinstance(tid, str) or not isinstance(reason, str) \
                or not isinstance(edge, str) or not isinstance(rng, dict):
            continue
        lane = str(rec.get("target_lane"))
        notice = FlushNotice(edge, Lane(lane) if lane in _LANES else Lane.DATA,
                             (int(rng.get("start") or 0), int(rng.get("end") or 0)))
        found.setdefault((tid, reason), []).append(
            (int(rec.get("runtime_sequence") or 0), ln.line, notice))

    def flushes(turn_id: str, reason: str) -> Sequence[FlushNotice]:
        got = found.pop((turn_id, reason), [])
        return [n for _, _, n in sorted(got, key=lambda x: (x[0], x[1]))]

    return flushes
