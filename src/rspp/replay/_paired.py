"""A streamed replay's comparison, bytes first (issue 12).

A faithful replay writes, line for line, the recorded timeline again: candidate line
``k`` is recorded line ``k`` byte for byte, but for the ``scope`` tag the replay puts on
its event records. :class:`PairedComparison` checks exactly that, and nothing more,
while the session runs: each candidate record is encoded as the recorder writes it
(msgspec JSON, fields in declaration order), its replay tag taken off, and compared
with the raw recorded line the replay's own pass over the file read
(:attr:`~rspp.replay._line_fetcher.LineFetcher.on_raw`); the recorded lines the
replay does not feed are not decoded at all. Beside it, per candidate line, it keeps a
few facts about the turn structure (:class:`_Shape`).

When every pair is the same and the turn structure is *plain* (:class:`_Shape`), the
turn-by-turn comparison (:class:`~rspp.observability.TurnwiseComparison`) of the two
timelines finds nothing whatever order it was fed them in, and counts no late line:
the report is the empty one, without running it. Otherwise (a divergence, a cut or
garbage line, a line out of order...) the comparison runs for real, fed exactly
as the in-process streamed comparison was fed: from the first different pair on (caught
up with the candidate lines before it, rebuilt from the recorded lines they equal), or at
the end when the timeline is not plain; it reads the recording itself, as far as the
replay's pass had read when each candidate line was made, and on while it waits for the
recording (see :func:`take_actual`). The report is therefore that of the
in-process comparison, byte for byte, in every case.

Why the empty report is exact for a plain, identical pair of timelines (the reasoning
the facts in :class:`_Shape` check): both sides get the same lines, so each side makes
the same turns *over* at the same line (the terminal of the :attr:`CLOSE_AFTER`-th
later turn); a turn is compared when the second side makes it over, and if no line
of the turn comes after that line, both sides hold all of its lines then (same
groups: no OUTCOME/ORDERING finding, same plans and evidence: no PLAN/PROVIDER
finding) and no line of it arrives late. The session-scoped group is compared in
prefixes; with its records in non-decreasing (session, sequence) order both sides drop
the same prefixes and no record is older than a dropped one. A matched record's
TIMING offset is measured from its side's earliest timestamp; when the first timed
record carries the earliest timestamp both sides measure from the same one.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from rspp.contracts import (
    DivergencePolicy,
    DivergenceReport,
    EventRecord,
    ReplayMode,
    ReplayTolerances,
)
from rspp.observability._compare import TurnwiseComparison
from rspp.observability._errors import TimelineFormatError
from rspp.observability._evidence import EVIDENCE_KIND
from rspp.observability._recorder import BufferedItem
from rspp.observability._timeline_io import TimelineLine
from rspp.replay._fastline import compared_line
from rspp.replay._line_fetcher import LineFetcher
from rspp.replay._rig import compared_line_of

__all__ = ["PairedComparison", "take_actual"]

_enc = msgspec.json.encode
_TERMINAL = frozenset({"commit", "abort"})
_KEEP_WHOLE = frozenset({"resolved_turn_plan", EVIDENCE_KIND})
_CLOSE_AFTER = TurnwiseComparison.CLOSE_AFTER
_NEWLINE = b"\n"


def take_actual(comparison: TurnwiseComparison, fetcher: LineFetcher, position: int,
                line: TimelineLine) -> None:
    """Give ``comparison`` one candidate line as the in-process streamed comparison got
    it: after the recorded lines through ``position`` (how far the replay's pass had
    read when the line was made), and reading the recording on while the comparison
    waits for it (what :meth:`~rspp.replay.ReplayEngine._feed_expected` does)."""
    if position > fetcher.position:
        fetcher.read_through(position)
    comparison.add_actual(line)
    if comparison.waiting_for_expected:
        fetcher.read_on(lambda: not comparison.waiting_for_expected)


def actual_view(kind: str, line: dict[str, Any]) -> TimelineLine:
    """The candidate line as the comparator reads it (a payload's text only)."""
    payload = line.get("payload")
    return TimelineLine(line=0, kind=kind, record=line["record"],
                        payload=payload if isinstance(payload, dict) and "text" in payload
                        else None)


class _Shape:
    """Facts of one timeline (the candidate's) that make its self-comparison plain.

    ``plain`` stays True while: no line of a turn comes after the line that made the
    turn over; plans and evidence name their turn (a string); the session-scoped
    records come in non-decreasing (session id, runtime_sequence) order; no timed
    record is earlier than the first timed record. (As :class:`TurnwiseComparison`
    reads records: recorder artefacts and TelemetryLane are left out, turn
    transitions only count for the first fact.)
    """

    __slots__ = ("_first_ts", "_last", "_order", "_over", "plain")

    def __init__(self) -> None:
        self.plain = True
        self._order: list[str] = []
        self._over: set[str] = set()
        self._last: tuple[str, int] = ("", -1)
        self._first_ts: int | None = None

    def see(self, kind: str, rec: Any) -> None:
        lane = getattr(rec, "lane", None)
        # (an EventRecord, most lines, has no signal: no failing attribute lookup)
        signal = None if type(rec) is EventRecord else getattr(rec, "signal", None)
        if lane == "TelemetryLane" or signal == "recording_level_downgraded":
            return
        if signal == "cancel" and getattr(rec, "scope", None) == "provider_invocation":
            return
        event_id = getattr(rec, "event_id", None)
        if type(event_id) is str and event_id.startswith("or02-"):
            return
        turn = getattr(rec, "turn_id", None)
        if type(turn) is str:
            if turn in self._over:
                self.plain = False  # a line of the turn after it was over: late
                return
        elif kind in _KEEP_WHOLE:
            self.plain = False  # a plan or evidence of no turn: compared by its str()
            return
        if kind in _KEEP_WHOLE or kind == "turn_transition":
            return
        ts = getattr(rec, "runtime_timestamp_ms", None)
        if type(ts) is int:
            if self._first_ts is None:
                self._first_ts = ts
            elif ts < self._first_ts:
                self.plain = False
        if type(turn) is not str:
            sid = getattr(rec, "session_id", None) or ""
            key = (sid if type(sid) is str else str(sid),
                   getattr(rec, "runtime_sequence", None) or 0)
            if key < self._last:
                self.plain = False
            self._last = key
            return
        if kind == "control_signal" and signal in _TERMINAL:
            order = self._order
            if turn not in order:
                order.append(turn)
                if len(order) > _CLOSE_AFTER:
                    self._over.add(order.pop(0))


class PairedComparison:
    """The streamed comparison of one session by bytes first (see the module doc).

    ``fetcher`` is the replay's pass over the recording (JSON Lines); the rig hands
    its records here (:meth:`add_items`); :meth:`finish` once the recording is read
    to its end."""

    def __init__(self, fetcher: LineFetcher, *, tag: str | None,
                 tolerances: ReplayTolerances, policy: DivergencePolicy,
                 mode: ReplayMode) -> None:
        self.fetcher = fetcher
        self.tolerances, self.policy, self.mode = tolerances, policy, mode
        self._suffix = b"" if tag is None else b',"scope":' + _enc(tag) + b"}"
        self._tag = tag
        self._session = fetcher.span.session_id if fetcher.span is not None else None
        fetcher.on_raw = self._expected
        #: recorded lines read and not yet paired (the pass is ahead of the candidate)
        self._raws: deque[tuple[int, bytes | TimelineFormatError,
                                TimelineLine | TimelineFormatError | None]] = deque()
        #: candidate records not yet paired (the candidate is ahead of the pass)
        self._items: deque[BufferedItem] = deque()
        self._paired = 0
        #: per candidate line (up to the first different pair), how far the pass had
        #: read when it was made
        self.positions = array("q")
        #: per pair before the first different one: the candidate carried the tag
        self._tagged = bytearray()
        self.shape = _Shape()
        #: index of the first pair that is not the same (None: all so far)
        self.diverged: int | None = None
        self._rerun: _Rerun | None = None
        self.late_lines = 0
        self._heads: dict[str, bytes] = {}

    # ------------------------------------------------------------ streaming
    def add_items(self, items: list[BufferedItem]) -> None:
        """The rig's new records, in order."""
        position = self.fetcher.position
        positions, shape, raws = self.positions, self.shape, self._raws
        for item in items:
            if self.diverged is not None:
                self._keep(item, position)
                continue
            positions.append(position)
            shape.see(item.kind, item.record)
            if raws:
                self._pair(item, *raws.popleft())
            else:
                self._items.append(item)

    def _expected(self, number: int, raw: bytes | TimelineFormatError,
                  decoded: TimelineLine | TimelineFormatError | None) -> None:
        """A recorded line the pass read (``decoded``: the pass decoded it to feed it)."""
        if self.diverged is not None:
            return
        if self._items:
            self._pair(self._items.popleft(), number, raw, decoded)
        else:
            self._raws.append((number, raw, decoded))

    def _pair(self, item: BufferedItem, number: int, raw: bytes | TimelineFormatError,
              decoded: TimelineLine | TimelineFormatError | None) -> None:
        tagged = self._same(item, number, raw, decoded)
        if tagged is None:
            self._items.appendleft(item)  # (kept by _diverge, with its position)
            self._diverge()
            return
        self._tagged.append(tagged)
        self._paired += 1

    def _same(self, item: BufferedItem, number: int, raw: bytes | TimelineFormatError,
              decoded: TimelineLine | TimelineFormatError | None) -> int | None:
        """1/0 (the candidate's replay tag was taken off / not) when the recorded line
        ``raw`` is the candidate record as the comparator reads it; None otherwise."""
        if not isinstance(raw, bytes) or isinstance(decoded, TimelineFormatError):
            return None
        kind, rec = item.kind, item.record
        if self._session is not None and getattr(rec, "session_id", None) != self._session:
            return None
        body = _enc(rec)
        tagged = 0
        suffix = self._suffix
        if suffix and kind == "event_record" and body.endswith(suffix):
            body = body[:-len(suffix)] + b"}"
            tagged = 1
        head = self._heads.get(kind)
        if head is None:
            head = self._heads[kind] = b'{"kind":' + _enc(kind) + b',"record":'
        payload = item.payload
        if payload is not None:
            return tagged if raw == head + body + b',"payload":' + _enc(payload) + b"}\n" \
                else None
        line = head + body
        if not raw.startswith(line):
            return None
        end = len(line)
        if len(raw) == end + 2 and raw.endswith(b"}\n"):
            return tagged
        if not raw.startswith(b',"payload":', end):
            return None
        # the candidate's payload is not encoded (a compared-only replay: audio, debug):
        # the recorded one must carry no text either (what the comparator reads of it)
        if decoded is None:
            decoded = compared_line(number, raw, checked=True)
        if decoded is None or (decoded.payload is not None and "text" in decoded.payload):
            return None
        return tagged

    def _diverge(self) -> None:
        """The first pair that is not the same: from here on the turn-by-turn comparison
        runs, caught up with the candidate lines so far."""
        self.diverged = self._paired
        self._raws.clear()
        self._catch_up()
        pending, self._items = self._items, deque()
        for k, item in enumerate(pending, start=self._paired):
            self._keep(item, self.positions[k])

    def _catch_up(self) -> None:
        """Start the comparison and give it the candidate lines the recording's ones
        equal (rebuilt from them)."""
        self._rerun = rerun = _Rerun(self.fetcher, self.tolerances, self.policy, self.mode)
        rebuilt = _Rebuilt(LineFetcher(self.fetcher.path, (), self.fetcher.span),
                           self._tagged, self._tag)
        try:
            for k in range(self._paired):
                rerun.take(self.positions[k], rebuilt.line(k))
        finally:
            rebuilt.close()

    def _keep(self, item: BufferedItem, position: int) -> None:
        if self._rerun is None:  # (a divergence starts it)
            raise RuntimeError("a candidate line kept before the comparison started")
        self._rerun.take(position, actual_view(item.kind, compared_line_of(item)))

    # ------------------------------------------------------------- the end
    def finish(self) -> DivergenceReport:
        """The report (the recording must have been read to its end)."""
        if self.diverged is None and (self._raws or self._items):
            self._diverge()  # one timeline is longer
        if self._rerun is None:
            if self.shape.plain:
                return DivergenceReport.build(self.mode, [], self.tolerances, self.policy)
            self._catch_up()  # the same lines, but a late record (or so): compare
        rerun = self._rerun
        if rerun is None:  # (made just above)
            raise RuntimeError("no comparison to finish")
        report, self.late_lines = rerun.finish()
        return report

    def close(self) -> None:
        """Close the comparison's own pass over the recording (if it ran)."""
        if self._rerun is not None:
            self._rerun.close()


class _Rerun:
    """The turn-by-turn comparison fed as the in-process streamed one was: its own pass
    over the recording, read as far as the replay's pass had read (see
    :func:`take_actual`)."""

    def __init__(self, fetcher: LineFetcher, tolerances: ReplayTolerances,
                 policy: DivergencePolicy, mode: ReplayMode) -> None:
        self.comparison = TurnwiseComparison(tolerances=tolerances, policy=policy, mode=mode)
        self.expected = LineFetcher(fetcher.path, (), fetcher.span)
        self.expected.on_line = self.comparison.add_expected

    def take(self, position: int, line: TimelineLine) -> None:
        take_actual(self.comparison, self.expected, position, line)

    def finish(self) -> tuple[DivergenceReport, int]:
        self.expected.read_on(None)
        return self.comparison.finish(), self.comparison.late_lines

    def close(self) -> None:
        self.expected.close()


class _Rebuilt:
    """Candidate lines rebuilt from the recorded lines they equal (another pass)."""

    def __init__(self, fetcher: LineFetcher, tagged: bytearray, tag: str | None) -> None:
        self.fetcher = fetcher
        self.tagged = tagged
        self.tag = tag
        self._lines: deque[TimelineLine] = deque()
        self._next = 0  # index of the first line in _lines
        fetcher.on_line = self._lines.append

    def line(self, k: int) -> TimelineLine:
        lines = self._lines
        want: Callable[[], bool] = lambda: len(lines) > k - self._next  # noqa: E731
        if not want():
            self.fetcher.read_on(want)
        while self._next < k:
            lines.popleft()
            self._next += 1
        ln = lines.popleft()
        self._next += 1
        record = ln.record
        if self.tagged[k]:
            record = {**record, "scope": self.tag}
        payload = ln.payload
        return TimelineLine(line=0, kind=ln.kind, record=record,
                            payload=payload if payload is not None and "text" in payload
                            else None)

    def close(self) -> None:
        self.fetcher.close()
