"""A live session that follows its session through runtime failover (opt-in).

::

    reroute = Rerouter(cp_url, api_key=key, tenant_id="acme", session_id=sid)
    async with await FailoverClient.connect(reroute) as client:
        await client.send_text("hello")
        async for item in client.events():   # continues across runtimes
            ...

A served session sends at least a ``stats`` event every second while connected.
When nothing arrives for ``detect_s`` (a paused or partitioned runtime), or the
connection drops or closes for a reason that is not the session's end (runtime
killed, drained, lease lost), the client asks the control plane where the session
runs now (a fresh token for it: ``POST /v1/sessions/{id}/token``). While the
control plane still places it on the same runtime at the same lease epoch, the next
ask is a long poll (``moved_from`` + ``wait_ms``): the control plane answers the
moment the session moves (its failover monitor rotated the lease), not the client's
next poll; a quiet connection is kept and still read meanwhile, and if it speaks
again the client stays. Once the session moved (a new runtime or a newer epoch) the
client connects there. The new runtime resumes the session under the same
id at the new epoch (``ready.lease_epoch``), restored from the last checkpoint of
its state (conversation, turn counter), and it reports the turn the lost runtime left
open first on the new connection: a ``turn`` event ``abort`` (reason
``authority_loss``) and ``close``. A turn the new runtime does not report (it was
opened after the last checkpoint was saved) is reported by this client instead, as
``abort`` with reason ``runtime_failover``, before the first other event.

The superseded connection is never read from again for the caller: anything that
arrives on it after the new connection is ready is counted in
:attr:`FailoverClient.stale_outputs` (a runtime that fences by epoch sends none) and
dropped. Every connection of the session shares one :class:`~rspp.client.EpochFence`
(protocol 1.2: each event is of the epoch ``ready`` or the last ``epoch`` event named):
an output of an epoch lower than the highest seen is refused on any connection
(:attr:`FailoverClient.refused_outputs`), and :attr:`stale_outputs_accepted` counts
outputs handed to the caller although a newer epoch had been seen (the check of the
client's own invariant: 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from rspp.client._client import EpochFence, LiveClient, SessionRefusedError
from rspp.client._route import session_url
from rspp.transports import Clear, EpochEvent, ServerEvent, SessionEnd, Stats, TurnEvent

__all__ = ["FailoverClient", "FailoverEvent", "OutputNote", "Placement", "Rerouter"]

#: close reasons that mean the session itself is over (no failover)
_FINAL_REASONS = ("client_end", "resume_window_expired")


class _Unreachable(SessionRefusedError):
    """Nothing listens at the placement's runtime (connection refused): it is gone."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a session runs now: its WebSocket URL, a fresh token and the lease epoch."""

    url: str
    token: str
    runtime_id: str
    epoch: int


class Rerouter:
    """Asks a control plane where ``session_id`` runs now (a fresh token of its route)."""

    def __init__(self, cp_url: str, *, api_key: str | None, tenant_id: str, session_id: str,
                 timeout_s: float = 5.0) -> None:
        self.cp_url = cp_url.rstrip("/")
        self.api_key = api_key
        self.tenant_id = tenant_id
        self.session_id = session_id
        self.timeout_s = timeout_s
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def __call__(self, moved_from: Placement | None = None,
                       wait_s: float = 0.0) -> Placement:
        """The session's placement; raises :class:`SessionRefusedError` (409: not live).

        With ``moved_from`` and ``wait_s``: while the session is still placed there, the
        control plane holds the answer up to ``wait_s`` (at most 10 s) and gives it the
        moment the session moves (failover, migration, end): a long poll, not a loop."""
        if self._http is None:  # one connection pool for every ask of this session
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.AsyncClient(base_url=self.cp_url, timeout=self.timeout_s,
                                           headers=headers)
        body: dict[str, object] = {"tenant_id": self.tenant_id}
        if moved_from is not None and wait_s > 0:
            body["moved_from"] = {"runtime_id": moved_from.runtime_id,
                                  "lease_epoch": moved_from.epoch}
            body["wait_ms"] = min(10_000, int(wait_s * 1000))
        try:
            resp = await self._http.post(f"/v1/sessions/{self.session_id}/token", json=body,
                                         timeout=self.timeout_s + min(wait_s, 10.0))
        except httpx.HTTPError as exc:
            raise SessionRefusedError(None, f"control plane {self.cp_url} unreachable: "
                                      f"{exc}") from None
        if resp.status_code >= 400:
            raise SessionRefusedError(resp.status_code, f"no route for session "
                                      f"{self.session_id}: {resp.text[:200]}")
        data = resp.json()
        claims = data["claims"]
        endpoint = data.get("endpoint")
        if not endpoint:
            raise SessionRefusedError(503, f"runtime {claims['runtime_id']} of session "
                                      f"{self.session_id} is not registered")
        return Placement(url=session_url(str(endpoint), self.session_id),
                         token=str(data["token"]), runtime_id=str(claims["runtime_id"]),
                         epoch=int(claims["lease_epoch"]))


@dataclass(frozen=True, slots=True)
class OutputNote:
    """One output as it arrived on one of the session's connections (diagnostics:
    :attr:`FailoverClient.on_output`)."""

    runtime_id: str
    #: the epoch the connection was ready at, and the epoch of this output (the last
    #: ``ready``/``epoch`` event), with that ``epoch`` event's send-time stamp (wall ms)
    ready_epoch: int | None
    epoch: int | None
    marked_at_ms: int | None
    #: the connection's successor was ready when it arrived
    superseded: bool
    #: refused by the epoch fence (never handed to the caller)
    refused: bool
    kind: str
    #: wall-clock ms of its arrival here
    at_ms: int


@dataclass(slots=True)
class FailoverEvent:
    """One move of the session to another connection."""

    reason: str
    from_runtime: str
    from_epoch: int
    #: monotonic seconds: the old connection was lost / suspected, the new one ready
    lost_at: float
    to_runtime: str | None = None
    to_epoch: int | None = None
    resumed_at: float | None = None
    #: monotonic seconds: the control plane first answered with the new placement
    placed_at: float | None = None
    #: placements asked for until the session could be resumed
    attempts: int = 0
    #: seconds the control plane took to answer with the new placement
    route_s: float | None = None
    #: why attempts failed (the first few)
    errors: list[str] = field(default_factory=list)
    #: wall-clock ms at which the new connection was ready
    resumed_wall_ms: int | None = None
    aborted_turns: list[str] = field(default_factory=list)
    #: of ``aborted_turns``: those the new runtime reported ended, those this client did
    runtime_aborted: list[str] = field(default_factory=list)
    client_aborted: list[str] = field(default_factory=list)


    def note(self, error: str) -> None:
        if len(self.errors) < 5:
            self.errors.append(error[:160])


class FailoverClient:
    """A live session across runtimes (see the module docstring)."""

    def __init__(self, reroute: Callable[[], Awaitable[Placement]], *, sample_rate: int = 16000,
                 msgpack: bool = False, detect_s: float = 2.0, resume_window_s: float = 30.0,
                 poll_s: float = 0.2, move_wait_s: float = 5.0,
                 connect_timeout_s: float | None = None,
                 client_name: str = "rspp-failover-client") -> None:
        self.reroute = reroute
        self.sample_rate = sample_rate
        self.msgpack = msgpack
        self.detect_s = detect_s
        self.resume_window_s = resume_window_s
        self.poll_s = poll_s
        #: how long one ask waits at the control plane for the session to move
        self.move_wait_s = move_wait_s
        #: how long a connection may take to be ``ready`` (the runtime starts the session)
        self.connect_timeout_s = (connect_timeout_s if connect_timeout_s is not None
                                  else max(6.0, 3 * detect_s))
        self.client_name = client_name
        self.client: LiveClient | None = None
        self.placement: Placement | None = None
        self.failovers: list[FailoverEvent] = []
        #: outputs that arrived on a superseded connection after its successor was ready
        self.stale_outputs = 0
        #: stale outputs by event type
        self.stale_kinds: dict[str, int] = {}
        #: ``clear`` events (audio retractions) that arrived on a superseded connection
        self.late_retractions = 0
        #: the highest lease epoch seen of the session, shared by its connections
        self.fence = EpochFence()
        #: outputs the epoch fence refused (of an epoch lower than the highest seen)
        self.refused_outputs = 0
        #: outputs handed to the caller although a newer epoch had been seen (must be 0)
        self.stale_outputs_accepted = 0
        #: told every output of every connection as it arrives (diagnostics, benchmarks)
        self.on_output: Callable[[OutputNote], None] | None = None
        self._superseded: set[int] = set()
        self.ended = False
        self.end_reason: str | None = None
        self._open_turns: set[str] = set()
        #: turns open when the session moved: the new runtime reports their end first
        self._unreported: set[str] = set()
        self._moved_by: FailoverEvent | None = None
        self._ready = asyncio.Event()
        #: set when the session moved to another connection (or ended); then replaced
        self._moved = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()
        self._ending = False

    @classmethod
    async def connect(cls, reroute: Callable[[], Awaitable[Placement]],
                      **options: float | int | bool | str) -> FailoverClient:
        """Ask for the session's placement and connect; raises SessionRefusedError."""
        self = cls(reroute, **options)  # type: ignore[arg-type]
        placement = await reroute()
        await self._attach(placement)
        return self

    async def _attach(self, placement: Placement) -> None:
        try:
            client = await self._connect(placement)
        except SessionRefusedError:
            raise
        except Exception as exc:  # whatever a half-open handshake raises: try again later
            if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
                # nothing listens there: the runtime is gone
                raise _Unreachable(None, f"cannot connect to {placement.url}: "
                                   f"{exc!r}") from None
            raise SessionRefusedError(None, f"cannot connect to {placement.url}: "
                                      f"{exc!r}") from None
        self.client = client
        epoch = client.ready.lease_epoch
        self.placement = Placement(placement.url, placement.token, placement.runtime_id,
                                   epoch if epoch is not None else placement.epoch)
        client.on_output = self._noter(client, placement.runtime_id)
        self._ready.set()

    def _noter(self, client: LiveClient, runtime_id: str) -> Callable[[ServerEvent, bool],
                                                                       None]:
        """The connection's output hook: counts refusals, tells :attr:`on_output`."""
        ready_epoch = client.ready.lease_epoch
        key = id(client)

        def note(item: ServerEvent, refused: bool) -> None:
            if refused:
                self.refused_outputs += 1
            superseded = key in self._superseded
            if superseded:
                if isinstance(item, Clear):  # retracts the old turn's audio: not an output
                    self.late_retractions += 1
                else:
                    self.stale_outputs += 1
                    kind = type(item).__name__
                    self.stale_kinds[kind] = self.stale_kinds.get(kind, 0) + 1
            if self.on_output is not None:
                self.on_output(OutputNote(
                    runtime_id=runtime_id, ready_epoch=ready_epoch, epoch=client.epoch,
                    marked_at_ms=client.marked_at_ms, superseded=superseded,
                    refused=refused, kind=type(item).__name__,
                    at_ms=time.time_ns() // 1_000_000))

        return note

    async def _connect(self, placement: Placement) -> LiveClient:
        return await LiveClient.connect(placement.url, token=placement.token,
                                        sample_rate=self.sample_rate, msgpack=self.msgpack,
                                        client_name=self.client_name,
                                        open_timeout=self.connect_timeout_s,
                                        fence=self.fence)

    @property
    def epoch(self) -> int:
        return self.placement.epoch if self.placement is not None else 0

    @property
    def runtime_id(self) -> str | None:
        return self.placement.runtime_id if self.placement is not None else None

    async def __aenter__(self) -> FailoverClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --------------------------------------------------------------- input
    async def _current(self) -> LiveClient:
        await asyncio.wait_for(self._ready.wait(), self.resume_window_s)
        if self.client is None:
            raise SessionRefusedError(None, "the session has no connection; connect first")
        return self.client

    def _placed(self) -> Placement:
        if self.placement is None:
            raise SessionRefusedError(None, "the session was never placed; connect first")
        return self.placement

    async def _send(self, op: Callable[[LiveClient], Awaitable[None]]) -> None:
        """Send on the current connection; if it is gone, once more on its successor."""
        for _ in range(2):
            client = await self._current()
            moved = self._moved
            try:
                await op(client)
                return
            except ConnectionClosed:
                if self.ended:
                    raise
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(moved.wait(), self.resume_window_s)
        raise SessionRefusedError(None, f"session could not be resumed ({self.end_reason})")

    async def send_text(self, text: str, id: str | None = None) -> None:
        """Typed input (sent again on the new connection if the old one just died); with
        an ``id`` (idempotency key) the session takes it at most once, whichever runtime
        it reached."""
        await self._send(lambda c: c.send_text(text, id))

    async def send_audio(self, pcm: bytes) -> None:
        await self._send(lambda c: c.send_audio(pcm))

    async def interrupt(self) -> None:
        await self._send(lambda c: c.interrupt())

    async def end_of_utterance(self) -> None:
        await self._send(lambda c: c.end_of_utterance())

    async def end(self) -> None:
        """No more input: the session finishes its turns and closes (no failover after)."""
        self._ending = True
        await (await self._current()).end()

    async def close(self) -> None:
        self._ending = True
        if self.client is not None:
            await self.client.close()
        closer = getattr(self.reroute, "aclose", None)
        if closer is not None:
            await closer()
        for task in list(self._watchers):
            task.cancel()
        if self._watchers:
            await asyncio.wait(self._watchers)

    # -------------------------------------------------------------- output
    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events of the session, across failovers, until it ends."""
        while self.client is not None:
            client = self.client
            it = client.events().__aiter__()
            nxt: asyncio.Future[ServerEvent] | None = None
            try:
                while True:
                    if nxt is None:
                        nxt = asyncio.ensure_future(anext(it))
                    done, _ = await asyncio.wait({nxt}, timeout=self.detect_s)
                    if not done:  # quiet: ask where the session is while still listening
                        moved = await self._fail_over(client, "quiet", listening=nxt)
                        if moved is None:
                            return
                        if self.client is client:
                            if nxt.cancelled():  # given up for a move that did not happen
                                it, nxt = client.events().__aiter__(), None
                            continue  # it spoke again, or it is still placed here
                        for ev in moved:
                            yield ev
                        break
                    try:
                        item = nxt.result()
                    except StopAsyncIteration:  # the server closed the connection
                        nxt = None
                        code, why = client.close_code, client.close_reason
                        if self._ending or (code == 1000 and why.startswith(_FINAL_REASONS)):
                            self.ended, self.end_reason = True, why or "closed"
                            return
                        moved = await self._fail_over(client, f"closed:{code}:{why}")
                        if moved is None:
                            return
                        for ev in moved:
                            yield ev
                        break
                    nxt = None
                    if isinstance(item, EpochEvent):  # the connection's epoch moved on
                        self._epoch_moved(client, item.lease_epoch)
                    elif self._unreported:
                        for synthetic in self._reported(item):
                            yield synthetic
                    if (client.fence.stale(client.epoch)
                            and not isinstance(item, EpochEvent | Stats)):
                        self.stale_outputs_accepted += 1
                    self._track(item)
                    yield item
            finally:
                if nxt is not None and not nxt.done():
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)

    def _epoch_moved(self, client: LiveClient, epoch: int) -> None:
        """The current connection's runtime follows its lease to ``epoch`` (a rotation in
        place): later asks name that epoch as where the session was."""
        p = self.placement
        if client is self.client and p is not None and epoch > p.epoch:
            self.placement = Placement(p.url, p.token, p.runtime_id, epoch)

    def _track(self, item: ServerEvent) -> None:
        if isinstance(item, TurnEvent):
            if item.state == "open":
                self._open_turns.add(item.turn_id)
            elif item.state in ("close", "abort"):
                self._open_turns.discard(item.turn_id)
        elif isinstance(item, SessionEnd):
            self._ending = True

    async def _fail_over(self, old: LiveClient, reason: str,
                         listening: asyncio.Future[ServerEvent] | None = None
                         ) -> list[ServerEvent] | None:
        """Find where the session runs now and connect there; None when it is gone.

        The first ask is answered at once; while the session is still placed where it was,
        the next asks wait at the control plane for it to move (a long poll of
        ``move_wait_s``). A quiet connection (``listening``: its pending read) is kept
        meanwhile: if it speaks again first, the client stays (``[]``, same connection)."""
        placed = self._placed()
        loop = asyncio.get_running_loop()
        ev = FailoverEvent(reason=reason, from_runtime=placed.runtime_id,
                           from_epoch=placed.epoch, lost_at=loop.time())
        deadline = loop.time() + self.resume_window_s
        closed = reason.startswith("closed:")
        wait_s = 0.0
        #: the placement a long poll waits for the session to leave
        away: Placement = placed
        while loop.time() < deadline:
            ev.attempts += 1
            asked = loop.time()
            here = self._placed()
            try:
                placement = await self._ask(away, min(wait_s, deadline - asked), listening)
            except SessionRefusedError as exc:
                if exc.code in (401, 403, 404, 409):
                    if listening is not None and not listening.done():
                        # the session ended: its connection says how (its close comes
                        # after the runtime told the control plane); read that first
                        await asyncio.wait({listening}, timeout=self.detect_s)
                    if listening is not None and listening.done():
                        return []
                    self._gone(f"session_gone:{exc.reason}")
                    return None
                ev.note(f"route:{exc.code}:{exc.reason}")
                await asyncio.sleep(self.poll_s)  # control plane briefly unreachable
                continue
            if placement is None:
                return []  # the quiet connection spoke again: keep it
            # the control plane's epoch is one seen: outputs of an older one are refused
            # from now on, on every connection (a runtime following a rotation in place
            # names the new epoch with an ``epoch`` event)
            self.fence.see(placement.epoch)
            moved = placement.epoch != here.epoch or placement.runtime_id != here.runtime_id
            if placement.runtime_id == here.runtime_id and not closed:
                # still on the quiet runtime (at most its lease rotated): the connection is
                # only quiet; keep it, listen, and wait for the control plane's view to change
                if listening is None or not self._long_poll:
                    return []
                away, wait_s = placement, self.move_wait_s
                continue
            if moved and ev.placed_at is None:
                ev.placed_at = loop.time()
                ev.route_s = ev.placed_at - asked
            if listening is not None:
                if listening.done():
                    return []  # it spoke (or closed) meanwhile: read that first, then move
                # the old connection is left to the stale watcher: stop reading it here
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
                listening = None
            try:
                await self._switch(old, placement, ev)  # moved, or resume where it was
            except SessionRefusedError as exc:
                ev.note(f"connect {placement.runtime_id}@{placement.epoch}:{exc.code}:"
                        f"{exc.reason}")
                if self._long_poll and (isinstance(exc, _Unreachable) or not moved):
                    # its runtime is gone and the control plane has not moved it yet: wait
                    # there for the move instead of asking again and again
                    away, wait_s = placement, self.move_wait_s
                else:  # a runtime that is slow to start the session: ask and try again
                    wait_s = 0.0
                    await asyncio.sleep(self.poll_s)
                continue
            return self._aborts(ev)
        self._gone(f"failover_timeout:{reason}")
        return None

    @property
    def _long_poll(self) -> bool:
        return isinstance(self.reroute, Rerouter)

    async def _ask(self, here: Placement, wait_s: float,
                   listening: asyncio.Future[ServerEvent] | None) -> Placement | None:
        """The session's placement (waiting up to ``wait_s`` for it to leave ``here``);
        None when ``listening`` completed first (the quiet connection spoke or closed)."""
        if wait_s > 0 and isinstance(self.reroute, Rerouter):
            call = asyncio.ensure_future(self.reroute(moved_from=here, wait_s=wait_s))
        else:
            call = asyncio.ensure_future(self.reroute())
        if listening is None:
            return await call
        racing: set[asyncio.Future[Any]] = {call, listening}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if call.done():
            return call.result()
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        return None

    def _gone(self, reason: str) -> None:
        self.ended, self.end_reason = True, reason
        self._ready.set()  # senders fail on the closed connection instead of waiting
        self._moved.set()

    async def _switch(self, old: LiveClient, placement: Placement, ev: FailoverEvent) -> None:
        self._ready.clear()
        await self._attach(placement)
        loop = asyncio.get_running_loop()
        placed = self._placed()
        ev.to_runtime, ev.to_epoch = placed.runtime_id, placed.epoch
        ev.resumed_at, ev.resumed_wall_ms = loop.time(), time.time_ns() // 1_000_000
        self.failovers.append(ev)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
        self._superseded.add(id(old))
        watcher = asyncio.create_task(self._watch_stale(old), name="failover-stale-watch")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    def _aborts(self, ev: FailoverEvent) -> list[ServerEvent]:
        """The turns open on the lost connection: the new runtime reports their end first
        on its connection (:meth:`_reported`); nothing to report yet."""
        ev.aborted_turns = sorted(self._open_turns)
        self._unreported |= self._open_turns
        self._moved_by = ev
        return []

    def _reported(self, item: ServerEvent) -> list[ServerEvent]:
        """Settle the open turns of the lost connection with ``item``, an event of the new
        one: the runtime's own ``abort``/``close`` of such a turn settles it; any other
        event means the runtime reports no more of them, so this client ends the rest
        (``abort`` with reason ``runtime_failover``) before ``item``."""
        ev = self._moved_by
        if isinstance(item, TurnEvent) and item.turn_id in self._unreported \
                and item.state in ("abort", "close"):
            if item.state == "abort" and ev is not None:
                ev.runtime_aborted.append(item.turn_id)
            if item.state == "close":
                self._unreported.discard(item.turn_id)
            return []
        rest, self._unreported = sorted(self._unreported), set()
        out: list[ServerEvent] = []
        for tid in rest:
            self._open_turns.discard(tid)
            if ev is not None and tid in ev.runtime_aborted:
                continue  # reported aborted; its close was lost with the connection
            if ev is not None:
                ev.client_aborted.append(tid)
            out.append(TurnEvent(turn_id=tid, state="abort", reason="runtime_failover"))
        return out

    async def _watch_stale(self, old: LiveClient) -> None:
        """Keep reading the superseded connection (bounded): every output on it is stale,
        whether the epoch fence refused it (an older epoch) or not (counted by the
        connection's output hook, :meth:`_noter`)."""
        async def read() -> None:
            async for _ in old.events():
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), self.resume_window_s)
        with contextlib.suppress(Exception):
            await old.close()
