"""One external node process: spawn through the launcher, handshake, calls, cancel, stop.

The runtime writes frames to the child's stdin and a reader task (owned here, awaited in
:meth:`ChildProcess.stop`) decodes the child's stdout into typed messages: the launcher's
``sandbox`` report, ``ready``, and per call ``emit``/``done``/``error``. The child's stderr
is drained into a bounded tail quoted when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rspp.errors import RuntimeKernelError
from rspp.kernel import ResourceLimitError
from rspp.nodes.external._wire import (
    PROTOCOL,
    ChildMessage,
    Codec,
    Done,
    EmitMsg,
    ErrorMsg,
    ExternalProtocolError,
    Ready,
    SandboxReport,
    WireCodec,
)

__all__ = ["CallState", "ChildOptions", "ChildProcess", "ExternalNodeError"]

LAUNCHER = Path(__file__).with_name("_launch.py")
#: emits one call may have waiting before the node takes them (a flooding child is killed)
MAX_PENDING_EMITS = 4096


class ExternalNodeError(RuntimeKernelError):
    """An external node process failed: it crashed, broke the protocol or reported an error."""


@dataclass(frozen=True)
class ChildOptions:
    """How to run one child: command, codec, limits and sandbox."""

    command: tuple[str, ...]
    cwd: Path
    codec: Codec
    label: str
    cpu_seconds: int
    memory_mb: int
    max_open_files: int
    sandbox: bool
    read_paths: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class CallState:
    """One call in flight: its emits, and how it ended."""

    call: int
    emits: asyncio.Queue[EmitMsg | Done | ErrorMsg | None] = field(
        default_factory=lambda: asyncio.Queue(MAX_PENDING_EMITS))
    cancel_sent: bool = False


def _exit_reason(code: int | None, opts: ChildOptions) -> tuple[str, str | None]:
    """(reason, the resource limit that ended it, if one did) of a child's exit status."""
    if code is None:
        return "still running", None
    if code < 0:
        sig = -code
        if sig == signal.SIGXCPU:
            return (f"killed by SIGXCPU: exceeded cpu_seconds={opts.cpu_seconds}",
                    "cpu_seconds")
        return f"killed by {signal.Signals(sig).name}", None
    if code == 70:
        return "the launcher refused to run it (sandbox unavailable)", None
    return f"exited with code {code}", None


class ChildProcess:
    """A running external node process and its reader task."""

    def __init__(self, opts: ChildOptions) -> None:
        self.opts = opts
        self.codec = WireCodec(opts.codec)
        self.proc: asyncio.subprocess.Process | None = None
        self.report: dict[str, Any] = {}
        self.calls: dict[int, CallState] = {}
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self.cancel_acks: list[int] = []
        self.started_ns = 0
        self._ready: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dead: str | None = None
        #: the resource limit (param name) that killed the child, if one did
        self.limit_hit: str | None = None
        #: called with the call number when the child acknowledges a cancel
        self.on_cancel_ack: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ start
    async def start(self, init: dict[str, Any], timeout_s: float) -> None:
        """Spawn the launcher, read its sandbox report, send ``init``, await ``ready``."""
        o = self.opts
        config = {"codec": o.codec, "sandbox": o.sandbox, "read_paths": list(o.read_paths),
                  "rlimits": {"cpu_s": o.cpu_seconds, "as_bytes": o.memory_mb * 1024 * 1024,
                              "nofile": o.max_open_files}}
        env = {**os.environ, **o.env, "RSPP_EXTERNAL_CODEC": o.codec}
        self.started_ns = time.perf_counter_ns()
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), "--", *o.command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(o.cwd), env=env, start_new_session=True,
            limit=2 ** 23)
        self._tasks = [asyncio.create_task(self._read(), name=f"external:{o.label}:read"),
                       asyncio.create_task(self._drain_stderr(), name=f"external:{o.label}:err")]
        self.send({"type": "init", "protocol": PROTOCOL, **init})
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._ready)
        except TimeoutError:
            self._ready.cancel()
            await self.kill("no ready within start_timeout_ms")
            raise ExternalNodeError(
                f"external node {o.label} did not start within start_timeout_ms="
                f"{int(timeout_s * 1000)}{self._tail()}") from None

    def _tail(self) -> str:
        return f" (stderr: {' | '.join(self.stderr_tail)})" if self.stderr_tail else ""

    # ------------------------------------------------------------------ I/O
    def send(self, msg: dict[str, Any]) -> None:
        """Queue one frame to the child (never blocks; a gone child is noticed by the reader)."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(self.codec.frame(msg))

    async def _read(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        out = proc.stdout
        why: str | None = None
        try:
            while True:
                head = await out.readexactly(4)
                msg = self.codec.decode(await out.readexactly(self.codec.size(head)))
                self._dispatch(msg)
        except asyncio.IncompleteReadError:
            why = None
        except ExternalProtocolError as exc:
            why = str(exc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        code = await proc.wait()
        reason, self.limit_hit = _exit_reason(code, self.opts)
        self.dead = why or reason
        if self.report.get("refused"):
            self.dead = f"sandbox refused: {self.report['refused']}"
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ExternalNodeError(
                f"external node {self.opts.label} {self.dead} before it was ready"
                f"{self._tail()}"))
        for state in self.calls.values():
            with contextlib.suppress(asyncio.QueueFull):
                state.emits.put_nowait(None)  # the call ends with the process

    def _dispatch(self, msg: ChildMessage) -> None:
        if isinstance(msg, SandboxReport):
            self.report = dict(msg.enforced)
        elif isinstance(msg, Ready):
            if msg.protocol != PROTOCOL:
                raise ExternalProtocolError(f"the child speaks protocol {msg.protocol}, "
                                            f"the runtime {PROTOCOL}")
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        else:
            if isinstance(msg, Done) and msg.cancelled:
                self.cancel_acks.append(msg.call)
                if self.on_cancel_ack is not None:
                    self.on_cancel_ack(msg.call)
            state = self.calls.get(msg.call)
            if state is None:
                return  # a late message of a call that already ended (cancelled/timed out)
            try:
                state.emits.put_nowait(msg)
            except asyncio.QueueFull:
                raise ExternalProtocolError(
                    f"call {msg.call} has {MAX_PENDING_EMITS} emits waiting") from None

    async def _drain_stderr(self) -> None:
        proc = self.proc
        if proc is None or proc.stderr is None:
            return
        async for line in proc.stderr:
            text = line.decode(errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text[:200])

    # ------------------------------------------------------------------ calls
    def begin(self, call: int, msg: dict[str, Any]) -> CallState:
        state = CallState(call)
        self.calls[call] = state
        self.send({"type": "event", "call": call, **msg})
        return state

    def end(self, call: int) -> None:
        self.calls.pop(call, None)

    def cancel(self, call: int, reason: str) -> None:
        state = self.calls.get(call)
        if state is not None and not state.cancel_sent:
            state.cancel_sent = True
            self.send({"type": "cancel", "call": call, "reason": reason})

    def failure(self) -> RuntimeKernelError:
        """The error a call sees when the process died under it."""
        msg = f"external node {self.opts.label} {self.dead}{self._tail()}"
        return ResourceLimitError(msg) if self.limit_hit else ExternalNodeError(msg)

    # ------------------------------------------------------------------ end
    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the child so far (from /proc; None when gone)."""
        proc = self.proc
        if proc is None:
            return None
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def kill(self, why: str) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            self.dead = self.dead or why
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await self._join()

    async def stop(self, grace_s: float) -> None:
        """Ask the child to stop, close its stdin, kill it after ``grace_s``."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            self.send({"type": "stop"})
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(grace_s):
                    await proc.wait()
            except TimeoutError:
                await self.kill("did not stop within its grace")
        await self._join()

    async def _join(self) -> None:
        proc = self.proc
        if proc is not None:
            await proc.wait()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
