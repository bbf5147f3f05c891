"""Session checkpoints at turn boundaries, and resuming from one (F-155, F-157, F-158).

A :class:`SessionCheckpointer` watches one session's lifecycle records. At every
``turn_open`` and every ``close`` it takes a checkpoint - the session-hot and
session-durable state of :class:`~rspp.turns.StateManager` plus the runtime's own
session state (:class:`ResumePoint`: id counters, kernel turn index, the open turn,
the last committed turn, the idempotency window) - and a background writer saves the
newest one to the session's :class:`~rspp.turns.DurableStateStore`. Writing never
blocks the session: checkpoints taken while a write is in flight coalesce into the
next write. A write refused as stale (another owner wrote, or the lease moved on)
stops the writer for good: this runtime no longer owns the session.

:func:`resume_session` applies a loaded :class:`ResumePoint` to a freshly assembled
session on its new owner: ids continue where the old owner stopped (turn ids never
repeat within a session), the idempotency window carries over, and a turn that was
open on the old owner ends here through the turn driver (T8: ``deauthorized_drain``,
``abort(authority_loss)``, ``close`` at that turn's own epoch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from rspp.contracts import ControlSignal, SignalName
from rspp.turns._state import StaleStateError, StateManager
from rspp.turns._turn_driver import TurnDriver

__all__ = ["OpenTurn", "ResumePoint", "SessionCheckpointer", "resume_session"]

_LOG = logging.getLogger("rspp.turns")


class OpenTurn(msgspec.Struct, frozen=True, kw_only=True):
    """A turn that was Active when the checkpoint was taken."""

    turn_id: str
    authority_epoch: int
    plan_hash: str | None = None


class ResumePoint(msgspec.Struct, kw_only=True):
    """The runtime's own part of a session checkpoint (what a new owner resumes from)."""

    runtime_id: str = ""
    authority_epoch: int = 0
    #: ids issued per kind (``turn``: the turn counter)
    id_counters: dict[str, int] = {}
    #: the kernel's count of started turns (``ctx.turn_index`` of nodes)
    turn_index: int = 0
    open_turn: OpenTurn | None = None
    last_committed_turn: str | None = None
    last_closed_turn: str | None = None
    #: idempotency keys -> first event id, oldest first (F-158)
    idempotency: list[tuple[str, str]] = []
    #: checkpoints taken in the session's life (all owners)
    checkpoints: int = 0

    @classmethod
    def of(cls, session: dict[str, object]) -> ResumePoint | None:
        """The resume point stored in a checkpoint's ``session`` part (None when empty)."""
        if not session:
            return None
        return msgspec.convert(session, cls)


class SessionCheckpointer:
    """Checkpoints one session at its turn boundaries (see the module docstring)."""

    def __init__(self, driver: TurnDriver, state: StateManager, *, runtime_id: str,
                 retry_s: float = 0.25, max_retry_s: float = 2.0) -> None:
        self.driver = driver
        self.state = state
        self.runtime_id = runtime_id
        self.retry_s = retry_s
        self.max_retry_s = max_retry_s
        self.last_committed: str | None = None
        self.last_closed: str | None = None
        self.open_turn: OpenTurn | None = None
        self.taken = 0
        self.saved = 0
        self.failures = 0
        #: why writing stopped for good (another owner took over), else None
        self.stopped: str | None = None
        self._count = 0
        self._pending: dict[str, object] | None = None
        self._pending_no = 0
        self._saved_no = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def resume_from(self, point: ResumePoint) -> None:
        """Continue the bookkeeping of a checkpoint loaded from the previous owner."""
        self._count = point.checkpoints
        self.last_committed = point.last_committed_turn
        self.last_closed = point.last_closed_turn

    # ------------------------------------------------------------------ taking
    def on_record(self, rec: msgspec.Struct) -> None:
        """Session record tap: checkpoint at ``turn_open`` and ``close``."""
        if not isinstance(rec, ControlSignal) or rec.turn_id is None:
            return
        name = rec.signal
        if name is SignalName.TURN_OPEN:
            t = self.driver.timings.get(rec.turn_id)
            plan = t.plan if t is not None else None
            self.open_turn = OpenTurn(turn_id=rec.turn_id,
                                      authority_epoch=rec.authority_epoch or 0,
                                      plan_hash=plan.plan_hash if plan is not None else None)
            self.checkpoint()
        elif name is SignalName.COMMIT:
            self.last_committed = rec.turn_id
        elif name is SignalName.CLOSE:
            self.last_closed = rec.turn_id
            if self.open_turn is not None and self.open_turn.turn_id == rec.turn_id:
                self.open_turn = None
            self.checkpoint()

    def point(self) -> ResumePoint:
        d = self.driver
        return ResumePoint(
            runtime_id=self.runtime_id, authority_epoch=d.authority.epoch,
            id_counters=d.stamp.ids.counters(), turn_index=d.session.turn_index,
            open_turn=self.open_turn, last_committed_turn=self.last_committed,
            last_closed_turn=self.last_closed, idempotency=d.authority.dedupe.export(),
            checkpoints=self._count)

    def checkpoint(self) -> None:
        """Take a checkpoint now; the writer saves it (or a newer one) soon."""
        if self.stopped is not None:
            return
        self._count += 1
        self.taken += 1
        self._pending = self.state.document(msgspec.to_builtins(self.point()))
        self._pending_no += 1
        self._wake.set()

    # ------------------------------------------------------------------ writing
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.state.session_id}:checkpoints")

    async def _run(self) -> None:
        delay = self.retry_s
        while self.stopped is None:
            await self._wake.wait()
            self._wake.clear()
            doc, number = self._pending, self._pending_no
            if doc is None:
                continue
            try:
                await self.state.save(doc)
            except StaleStateError as exc:
                self.stopped = str(exc)
                _LOG.warning("session %s: checkpoints stop: %s", self.state.session_id, exc)
            except Exception as exc:  # the store is unreachable: retry with the newest one
                self.failures += 1
                _LOG.warning("session %s: checkpoint not saved (%s); retrying",
                             self.state.session_id, exc)
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_s)
                continue
            else:
                delay = self.retry_s
                self.saved += 1
                self._saved_no = number
                if self._pending_no == number:
                    self._pending = None
            self._progress.set()
            self._progress = asyncio.Event()

    @property
    def settled(self) -> bool:
        """Every checkpoint taken is saved (or writing stopped for good)."""
        return self.stopped is not None or self._saved_no == self._pending_no

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the newest checkpoint is saved; False on timeout or when stopped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.settled:
            left = deadline - loop.time()
            if left <= 0 or self._task is None or self._task.done():
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), left)
        return self.stopped is None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def resume_session(driver: TurnDriver, point: ResumePoint, *, reason: str) -> OpenTurn | None:
    """Apply ``point`` to a newly assembled, not yet connected session (see the module
    docstring); returns the interrupted turn whose end is now queued, if any."""
    driver.stamp.ids.resume(point.id_counters)
    driver.session.turn_index = max(driver.session.turn_index, point.turn_index)
    driver.authority.dedupe.load(point.idempotency)
    interrupted = point.open_turn
    if interrupted is not None:
        driver.interrupted_elsewhere(interrupted.turn_id, interrupted.authority_epoch, reason)
    return interrupted
