"""A streamed replay's comparison in a second process (issue 12).

A streamed replay (``rspp replay``) compares the candidate lines with the recording
turn by turn (:class:`~rspp.observability.TurnwiseComparison`) while the session runs.
With :class:`CompareProcess` that comparison, and the reading and decoding of the
recorded lines it needs, run in a forked child process: the replay sends it its
candidate lines through a pipe (msgspec MessagePack, in batches of :data:`BATCH`
lines: one write per batch) and reads the recording only for what it feeds. On a
machine with two usable cores the replay's wall time is then that of the session
process.

The report is the in-process one, byte for byte: each candidate line carries how far
the replay's own pass over the file had read when the line was made
(:attr:`~rspp.replay._line_fetcher.LineFetcher.position`), and the child reads the
recording that far before it takes the line, so the comparison sees the two
timelines interleaved exactly as in one process (the turn-by-turn comparison's
findings and its ``late_lines`` count depend on that order).

Messages (MessagePack arrays), parent -> child: ``["session", path, span, tolerances,
policy, mode]`` (one per replayed session), ``["lines", [[position, kind, record,
payload], ...]]``, ``["end"]``; child -> parent, after ``end``: ``["report", report,
late_lines]`` or, on any failure, ``["error", message]``. The child ends when the
parent closes its end of the pipe. A child that dies (killed, or an exception) makes
the replay fail with one line (:class:`~rspp.replay.ReplayError`), never hang: a write
to its pipe fails (EPIPE), and so does the read of its report (end of file).
"""

from __future__ import annotations

import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from rspp.contracts import DivergencePolicy, DivergenceReport, ReplayMode, ReplayTolerances
from rspp.observability._compare import TurnwiseComparison
from rspp.observability._timeline_io import TimelineLine
from rspp.replay._errors import ReplayError
from rspp.replay._line_fetcher import LineFetcher
from rspp.replay._paired import take_actual
from rspp.replay._spans import SessionSpan

__all__ = ["BATCH", "CompareProcess", "PipedComparison", "idle_core", "usable_cpus"]

#: candidate lines per message (one pipe write each)
BATCH = 256
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode
_Result = msgspec.msgpack.Decoder(tuple[str, DivergenceReport, int])


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


def idle_core() -> bool:
    """Whether a forked second process would get a core of its own: the platform forks,
    2 or more CPUs are usable and the 1-minute load average is below one less than their
    number (on a busy machine the two processes would only wait on each other through
    the pipe)."""
    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        return False
    cpus = usable_cpus()
    return cpus >= 2 and os.getloadavg()[0] < cpus - 1


class CompareProcess:
    """The forked comparison process; one :meth:`session` at a time, :meth:`close` at
    the end. Fork it early (before the recording is loaded): it starts as a copy of
    this process."""

    def __init__(self) -> None:
        if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover
            raise ReplayError("a comparison process needs fork(); compare in this process")
        ctx = multiprocessing.get_context("fork")
        to_child, self._to_child = ctx.Pipe(duplex=False)
        self._from_child, from_child = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_serve, name="rspp-replay-compare", daemon=True,
                                   args=(to_child, from_child, self._to_child, self._from_child))
        self.process.start()
        to_child.close()  # the child's ends: only the child holds them now, so its death
        from_child.close()  # is an end of file / a broken pipe here
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def session(self, fetcher: LineFetcher, *, tolerances: ReplayTolerances,
                policy: DivergencePolicy, mode: ReplayMode) -> PipedComparison:
        """Compare one streamed session: ``fetcher`` is the replay's pass over its file."""
        span = fetcher.span
        self.send(["session", fetcher.path,
                   None if span is None else [span.session_id, list(span.start),
                                              span.last_line],
                   msgspec.to_builtins(tolerances), msgspec.to_builtins(policy), mode.value])
        return PipedComparison(self, fetcher)

    def send(self, message: list[Any]) -> None:
        try:
            self._to_child.send_bytes(_encode(message))
        except OSError:  # EPIPE: the child is gone
            raise self._failure() from None

    def result(self) -> tuple[DivergenceReport, int]:
        try:
            raw = self._from_child.recv_bytes()
        except (EOFError, OSError):
            raise self._failure() from None
        if _decode(raw)[0] == "error":
            raise ReplayError(f"the comparison process failed: {_decode(raw)[1]}")
        _, report, late = _Result.decode(raw)
        return report, late

    def _failure(self) -> ReplayError:
        """Why the child is gone: its error message if it sent one, else how it ended."""
        try:
            if self._from_child.poll(0):
                message = _decode(self._from_child.recv_bytes())
                if message[0] == "error":
                    return ReplayError(f"the comparison process failed: {message[1]}")
        except (EOFError, OSError, msgspec.DecodeError):
            pass
        self.process.join(5)
        code = self.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 \
            else f"exited with status {code}" if code is not None else "stopped answering"
        return ReplayError(f"the comparison process {how} before the report; replay again "
                           "(or with --compare inline)")

    def close(self) -> None:
        """End the child (closing its pipe) and wait for it."""
        if self._closed:
            return
        self._closed = True
        self._to_child.close()
        self.process.join(10)
        if self.process.is_alive():  # pragma: no cover (a stuck child)
            self.process.kill()
            self.process.join()
        self._from_child.close()

    def __enter__(self) -> CompareProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PipedComparison:
    """The parent's side of one session's comparison: candidate lines go out in batches."""

    def __init__(self, process: CompareProcess, fetcher: LineFetcher) -> None:
        self.process = process
        self.fetcher = fetcher
        self.batch: list[tuple[int, object, object, object]] = []
        self.late_lines = 0

    def add_actual(self, line: dict[str, object]) -> None:
        """A candidate line (the rig's plain dict); the comparator reads a payload's text
        only, so other payloads (audio) are not sent."""
        payload = line.get("payload")
        self.batch.append((self.fetcher.position, line["kind"], line["record"],
                           payload if isinstance(payload, dict) and "text" in payload
                           else None))
        if len(self.batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            batch, self.batch = self.batch, []
            self.process.send(["lines", batch])

    def finish(self) -> DivergenceReport:
        """Send the rest, let the child read the recording to its end and compare what
        is left; its report (and :attr:`late_lines`)."""
        self.flush()
        self.process.send(["end"])
        report, self.late_lines = self.process.result()
        return report


# ------------------------------------------------------------------ the child
def _serve(inbox: Connection, outbox: Connection, *parents: Connection) -> None:
    """The child's loop: sessions one after another until the parent closes the pipe."""
    for end in parents:  # the parent's ends, inherited by the fork
        end.close()
    session: _Session | None = None
    try:
        while True:
            try:
                raw = inbox.recv_bytes()
            except EOFError:
                return
            message = _decode(raw)
            tag = message[0]
            if tag == "lines" and session is not None:
                session.take(message[1])
            elif tag == "session":
                if session is not None:
                    session.close()
                session = _Session(*message[1:])
            elif tag == "end" and session is not None:
                report, late = session.finish()
                session.close()
                session = None
                outbox.send_bytes(_encode(["report", report, late]))
            else:
                raise ReplayError(f"unexpected message {tag!r}")
    except BaseException as exc:  # every failure goes to the parent, as one line
        text = str(exc).splitlines()[0] if str(exc) else ""
        try:
            outbox.send_bytes(_encode(["error", f"{type(exc).__name__}: {text}"]))
        except OSError:
            pass
        os._exit(1)  # no multiprocessing traceback on stderr: the parent reports it
    finally:
        if session is not None:
            session.close()


class _Session:
    """One session's comparison in the child: its own pass over the recording."""

    def __init__(self, path: str, span: list[Any] | None, tolerances: dict[str, Any],
                 policy: dict[str, Any], mode: str) -> None:
        self.comparison = TurnwiseComparison(
            tolerances=msgspec.convert(tolerances, ReplayTolerances),
            policy=msgspec.convert(policy, DivergencePolicy), mode=ReplayMode(mode))
        self.fetcher = LineFetcher(path, (), None if span is None else SessionSpan(
            session_id=span[0], start=(span[1][0], span[1][1]), last_line=span[2]))
        self.fetcher.on_line = self.comparison.add_expected

    def take(self, batch: list[list[Any]]) -> None:
        comparison, fetcher = self.comparison, self.fetcher
        for position, kind, record, payload in batch:
            take_actual(comparison, fetcher, position,
                        TimelineLine(line=0, kind=kind, record=record, payload=payload))

    def finish(self) -> tuple[DivergenceReport, int]:
        self.fetcher.read_on(None)
        report = self.comparison.finish()
        return report, self.comparison.late_lines

    def close(self) -> None:
        self.fetcher.close()
