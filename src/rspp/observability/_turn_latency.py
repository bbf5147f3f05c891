"""Per-turn latency anchors from timeline lines: one definition for ``rspp run`` and the gates.

Anchors (``runtime_timestamp_ms``, one session's lines in order):

* **speech end**: the arrival of the input audio frame holding the last voiced sample
  of the utterance. The VAD writes a TelemetryLane audit record whose reason is
  :data:`~rspp.contracts.SPEECH_END_AUDIT` + that sample index when it ends an utterance;
  the ingress ``audio_raw`` record whose ``media_time`` covers the sample gives the time.
  Without such a record (explicit end of utterance, older timelines) it is the last
  ingress audio frame before the turn's proposal. A typed turn's is the arrival of its
  text (the turn's ``input.text`` DataLane record).
* **proposal** / **open**: ``turn_open_proposed`` (``turn_id`` match, else the latest
  unpaired one before the open) and ``turn_open``.
* **first audio**: the turn's first ``playback_started`` (the reply's first audio leaves
  the transport); a turn that played nothing has none.
* **first output**: the turn's first DataLane ``event_record`` after its open that is
  not the user's own input (``edge_id`` ``input.*``); often the transcript echoed to
  the client, before any reply audio.

Derived: ``speech_end -> open`` (endpointing wait + decision), ``speech_end -> first
audio`` (what the user hears as the response time), ``open -> first audio`` and the
turn-open decision ``proposal -> open``.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rspp.contracts import SPEECH_END_AUDIT
from rspp.observability._timeline_io import TimelineLine

__all__ = [
    "TurnLatency",
    "by_session",
    "frame_time_of_sample",
    "signal_of",
    "speech_end_sample",
    "timestamp_of",
    "turn_latencies",
]


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """Anchors (ms, session time) of one accepted turn and the latencies between them."""

    session_id: str
    turn_id: str
    proposal_ms: int | None
    open_ms: int
    speech_end_ms: int | None
    #: ``"vad"`` (the VAD's speech-end sample), ``"ingress"`` (last frame before proposal)
    #: or ``"text"`` (a typed turn's text)
    speech_end_source: str | None
    first_audio_ms: int | None
    first_output_ms: int | None
    committed: bool

    @staticmethod
    def _d(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None or b < a else b - a

    @property
    def decision_ms(self) -> int | None:
        """Proposal -> turn open (gate 1)."""
        return self._d(self.proposal_ms, self.open_ms)

    @property
    def speech_end_to_open_ms(self) -> int | None:
        return self._d(self.speech_end_ms, self.open_ms)

    @property
    def speech_end_to_first_audio_ms(self) -> int | None:
        """End of user speech -> first reply audio (gate 7)."""
        return self._d(self.speech_end_ms, self.first_audio_ms)

    @property
    def open_to_first_audio_ms(self) -> int | None:
        return self._d(self.open_ms, self.first_audio_ms)

    @property
    def open_to_first_output_ms(self) -> int | None:
        """Turn open -> first DataLane output (gate 2)."""
        return self._d(self.open_ms, self.first_output_ms)


def signal_of(line: TimelineLine) -> str | None:
    """The control signal name of a line (``None`` for other kinds)."""
    return line.record.get("signal") if line.kind == "control_signal" else None


def timestamp_of(line: TimelineLine) -> int:
    return int(line.record.get("runtime_timestamp_ms") or 0)


def by_session(lines: Iterable[TimelineLine]) -> dict[str, list[TimelineLine]]:
    """Lines per session in ``runtime_sequence`` order (ties: file position)."""
    grouped: dict[str, list[tuple[int, int, TimelineLine]]] = defaultdict(list)
    for position, line in enumerate(lines):
        session = line.record.get("session_id")
        if isinstance(session, str):
            grouped[session].append((int(line.record.get("runtime_sequence", 0)), position, line))
    return {s: [t[2] for t in sorted(items, key=lambda t: (t[0], t[1]))]
            for s, items in grouped.items()}


_sig, _ts = signal_of, timestamp_of


def _data(line: TimelineLine) -> bool:
    return line.kind == "event_record" and line.record.get("lane") == "DataLane"


def _edge(line: TimelineLine) -> str:
    edge = line.record.get("edge_id")
    return edge if isinstance(edge, str) else ""


def speech_end_sample(record: Mapping[str, Any]) -> int | None:
    """The sample of a VAD speech-end audit record (``None`` for any other record)."""
    reason = record.get("reason")
    if not isinstance(reason, str):
        return None
    if not reason.startswith(SPEECH_END_AUDIT):
        return None
    try:
        return int(reason[len(SPEECH_END_AUDIT):])
    except ValueError:
        return None


class _Ingress:
    """The session's ingress audio frames: index, time and first sample."""

    def __init__(self, seq: Sequence[TimelineLine]) -> None:
        self.index: list[int] = []
        self.ts: list[int] = []
        self.sample: list[int] = []
        for i, ln in enumerate(seq):
            rec = ln.record
            if (ln.kind == "event_record" and rec.get("lane") == "DataLane"
                    and rec.get("payload_class") == "audio_raw"
                    and rec.get("transport_sequence") is not None):
                self.index.append(i)
                self.ts.append(_ts(ln))
                media = rec.get("media_time") or {}
                self.sample.append(int(media.get("sample_index", -1)))

    def last_before(self, position: int) -> int | None:
        k = bisect.bisect_left(self.index, position)
        return self.ts[k - 1] if k else None

    def holding(self, sample: int) -> int | None:
        return frame_time_of_sample(self.sample, self.ts, sample)


def frame_time_of_sample(starts: Sequence[int], ts: Sequence[int], sample: int) -> int | None:
    """Arrival time of the input frame holding sample ``sample - 1`` (the last voiced one);
    ``starts`` are the frames' first samples in order, ``ts`` their arrival times."""
    k = bisect.bisect_right(starts, sample - 1) - 1  # frame k starts at starts[k]
    return ts[k] if 0 <= k < len(ts) else None


def turn_latencies(lines: Iterable[TimelineLine]) -> list[TurnLatency]:
    """Every accepted turn (one ``turn_open``) of every session, in timeline order."""
    out: list[TurnLatency] = []
    for session, seq in by_session(lines).items():
        ingress = _Ingress(seq)
        proposals = [(i, ln) for i, ln in enumerate(seq) if _sig(ln) == "turn_open_proposed"]
        speech_ends = [(i, s) for i, ln in enumerate(seq) if ln.kind == "event_record"
                       and (s := speech_end_sample(ln.record)) is not None]
        used: set[int] = set()
        previous = -1  # position of the previous turn's proposal: older speech ends are its
        for index, op in ((i, ln) for i, ln in enumerate(seq) if _sig(ln) == "turn_open"):
            turn = str(op.record.get("turn_id"))
            match = next((i for i, p in proposals if p.record.get("turn_id") == turn), None)
            if match is None:
                earlier = [i for i, _ in proposals if i < index and i not in used]
                match = earlier[-1] if earlier else None
            if match is not None:
                used.add(match)
            start = match if match is not None else index
            vad = [s for i, s in speech_ends if previous < i <= start]
            previous = start
            of_turn = [(i, ln) for i, ln in enumerate(seq) if ln.record.get("turn_id") == turn]
            typed = next((ln for _, ln in of_turn if _data(ln) and _edge(ln) == "input.text"),
                         None)
            speech_end, source = (_ts(typed), "text") if typed is not None else (None, None)
            if speech_end is None and vad:
                speech_end = ingress.holding(vad[-1])
                source = "vad" if speech_end is not None else None
            if speech_end is None:
                speech_end = ingress.last_before(start)
                source = "ingress" if speech_end is not None else None
            audio = next((ln for _, ln in of_turn if _sig(ln) == "playback_started"), None)
            first_data = next((ln for i, ln in of_turn if i > index and _data(ln)
                               and ln.record.get("event_scope") != "session"  # F-013 ids
                               and not _edge(ln).startswith("input.")), None)
            out.append(TurnLatency(
                session_id=session, turn_id=turn,
                proposal_ms=_ts(seq[match]) if match is not None else None, open_ms=_ts(op),
                speech_end_ms=speech_end, speech_end_source=source,
                first_audio_ms=_ts(audio) if audio is not None else None,
                first_output_ms=_ts(first_data) if first_data is not None else None,
                committed=any(_sig(ln) == "commit" for _, ln in of_turn),
            ))
    return out
