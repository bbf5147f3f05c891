"""The external node: a spec node whose work runs in a child process (F-122, F-123, F-124).

``type: external:DIR/rspp-node.json@sha256:DIGEST`` loads the package manifest, checks it
(:mod:`._trust`) and registers one :class:`ExternalNode` subclass per package and digest.
Each session's node instance owns one child process, started with the session
(``on_start``) through the trusted launcher (limits, sandbox) and stopped with it. Per call:

* the runtime-wide :class:`CallLimiter` of the type admits, queues or rejects it;
* the event goes over the boundary; the child's ``emit`` messages leave the node's ports;
* ``call_timeout_ms`` (real time: the child is a real process) ends a call that does not
  finish: the child is told to ``cancel``, and killed if it has not acknowledged within
  ``cancel_grace_ms``; the node raises ``TimeoutError`` (taxonomy ``provider_timeout``:
  the spec's fallback or the dead-letter stream);
* a turn cancel (soft or hard) is forwarded as ``cancel``; the child's acknowledgement is
  recorded (audit ``external_cancel_ack``);
* a child that dies fails the call (``runtime_internal_error``); the next call restarts
  it, at most ``max_restarts`` times per session;
* a call that runs into the child's limits (F-107: killed by SIGXCPU at ``cpu_seconds``, or
  an allocation refused under ``memory_mb``, which the child reports as ``error`` with
  ``limit: memory_mb``) fails with ``resource_limit_exceeded``, recorded as an audit
  ``external_limit:NAME:LIMIT=VALUE`` and the node metric ``external_limit_exceeded``: the
  spec's fallback carries the event, or the turn aborts ``resource_limit_exceeded`` (T10);
  the session goes on (a killed child is restarted at the next call).

Overhead is observable: node metrics ``external_start_seconds``, ``external_call_seconds``
and ``external_cpu_seconds`` (``rspp_node_metric``), and one audit per start naming what
the launcher enforced.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rspp.kernel import Node, ResourceLimitError
from rspp.nodes.external._child import ChildOptions, ChildProcess, ExternalNodeError
from rspp.nodes.external._limits import CallLimiter
from rspp.nodes.external._wire import Done, EmitMsg, ErrorMsg
from rspp.spec import param

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rspp.kernel import Event, NodeContext
    from rspp.nodes.external._manifest import NodeManifest
    from rspp.nodes.external._trust import Onboarded

__all__ = ["EXTERNAL_PARAMS", "ExternalNode", "external_node_class"]

EXTERNAL_PARAMS = (
    param("call_timeout_ms", "int", 750, "real time one call may take before it is "
          "cancelled in the child (and the child killed if it does not acknowledge); below "
          "the node budget timeout_ms (profile default 800 ms) so this limit acts first"),
    param("cancel_grace_ms", "int", 500, "how long a cancelled or timed-out call may take "
          "to acknowledge before the child is killed"),
    param("start_timeout_ms", "int", 20000, "time for the child to start and answer init"),
    param("max_concurrency", "int", 4, "calls in this type's child processes at once, "
          "across every session of the runtime"),
    param("max_queue", "int", 16, "calls waiting for a slot; beyond it a call is rejected "
          "(resource_limit_exceeded); 0: reject at once"),
    param("queue_timeout_ms", "int", 5000, "longest wait for a slot before rejection"),
    param("cpu_seconds", "int", 60, "CPU time limit of the child process (RLIMIT_CPU)"),
    param("memory_mb", "int", 1024, "address-space limit of the child (RLIMIT_AS)"),
    param("max_open_files", "int", 256, "file descriptor limit of the child (RLIMIT_NOFILE)"),
    param("sandbox", "bool", False, "untrusted node: no network (empty network namespace, "
          "Landlock TCP deny), read-only filesystem limited to the interpreter, import path, "
          "package directory and allow_read, no file writes"),
    param("allow_read", "list", [], "extra paths the sandboxed child may read"),
    param("max_restarts", "int", 2, "times a dead child is restarted per session"),
    param("config", "map", {}, "passed to the child in init"),
)

_CHILD_FAILED = object()


def _jsonable(attrs: Any) -> dict[str, Any]:
    if not attrs:
        return {}
    return {str(k): v for k, v in dict(attrs).items()
            if isinstance(v, str | int | float | bool) or v is None}


def _sandbox_reads(base: Path, extra: list[str]) -> tuple[str, ...]:
    """What a sandboxed child may read: its interpreter, import path and package."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             str(Path(sys.executable).resolve().parent.parent), str(base),
             "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/etc/ld.so.cache",
             "/usr/share/zoneinfo", "/dev/null", "/dev/urandom"}
    paths.update(p for p in sys.path if p and Path(p).exists())
    paths.update(str(Path(p).resolve()) for p in extra)
    return tuple(sorted(p for p in paths if Path(p).exists()))


class ExternalNode(Node):
    """Runs a packaged node program in a child process behind the ``rspp-external/1`` boundary."""

    type_name = "external"
    scope = "session"
    cancel_mode = "soft"
    #: on_start starts the child (bounded by start_timeout_ms); on_stop gives it 1 s
    hook_timeout_ms = 30000
    parameters = EXTERNAL_PARAMS
    manifest: ClassVar[NodeManifest]
    package_dir: ClassVar[Path]
    onboarded: ClassVar[Onboarded]
    #: one limiter per (max_concurrency, max_queue, queue timeout): the runtime's sessions share it
    limiters: ClassVar[dict[tuple[int, int, int], CallLimiter]]

    def __init__(self, ctx: NodeContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(ctx, params)
        p: dict[str, Any] = {q.name: q.default for q in EXTERNAL_PARAMS}
        p.update(self.params)
        self.p = p
        self.label = f"{self.manifest.name!r} (node {ctx.node_id})"
        key = (int(p["max_concurrency"]), int(p["max_queue"]), int(p["queue_timeout_ms"]))
        limiter = self.limiters.get(key)
        if limiter is None:
            limiter = self.limiters[key] = CallLimiter(
                repr(self.manifest.name), key[0], key[1], key[2] / 1000.0)
        self.limiter = limiter
        self.child: ChildProcess | None = None
        self.restarts = -1
        self.next_call = 0
        self.in_flight: int | None = None

    # ------------------------------------------------------------------ child
    def _options(self) -> ChildOptions:
        m, p = self.manifest, self.p
        command = tuple(sys.executable if a == "{python}" else a for a in m.command)
        return ChildOptions(
            command=command, cwd=self.package_dir, codec=m.codec,  # type: ignore[arg-type]
            label=self.label, cpu_seconds=int(p["cpu_seconds"]), memory_mb=int(p["memory_mb"]),
            max_open_files=int(p["max_open_files"]), sandbox=bool(p["sandbox"]),
            read_paths=(_sandbox_reads(self.package_dir, list(p["allow_read"] or []))
                        if p["sandbox"] else ()))

    async def _child(self) -> ChildProcess:
        child = self.child
        if child is not None and child.dead is None:
            return child
        if child is not None:
            await child.stop(0.0)
        self.restarts += 1
        if self.restarts > int(self.p["max_restarts"]):
            raise ExternalNodeError(f"external node {self.label} died {self.restarts} times "
                                    f"(max_restarts={self.p['max_restarts']}); not restarted "
                                    f"this session; last: {child.dead if child else '-'}")
        child = self.child = ChildProcess(self._options())
        child.on_cancel_ack = self._acked
        t0 = time.perf_counter_ns()
        await child.start({"node_id": self.ctx.node_id, "session_id": self.ctx.session_id,
                           "config": dict(self.p["config"] or {})},
                          int(self.p["start_timeout_ms"]) / 1000.0)
        self.ctx.telemetry.metric("external_start_seconds", (time.perf_counter_ns() - t0) / 1e9)
        r = child.report
        self.ctx.audit(
            f"external_start:{self.manifest.name}@{self.onboarded.digest[:12]}"
            f":sandbox={int(bool(r.get('sandbox')))}:netns={int(bool(r.get('net_namespace')))}"
            f":landlock={r.get('landlock_abi', 0) if r.get('landlock_fs') else 0}"
            f":cpu_s={r.get('rlimits', {}).get('cpu_s', '-')}"
            f":as_mb={int(r.get('rlimits', {}).get('as_bytes', 0)) // (1 << 20)}")
        return child

    # ------------------------------------------------------------------ process
    async def process(self, event: Event, port: str) -> None:
        t0 = time.perf_counter_ns()
        if await self.limiter.acquire():
            self.ctx.audit(f"external_queued:{self.manifest.name}:waited_ms="
                           f"{(time.perf_counter_ns() - t0) // 1_000_000}")
        try:
            child = await self._child()
            await self._call(child, event, port)
        finally:
            self.limiter.release()

    async def _call(self, child: ChildProcess, event: Event, port: str) -> None:
        self.next_call += 1
        call = self.next_call
        payload = event.payload
        if isinstance(payload, memoryview | bytearray):
            payload = bytes(payload)
        t0 = time.perf_counter_ns()
        state = child.begin(call, {"port": port, "kind": event.kind, "payload": payload,
                                   "final": bool(event.final), "attrs": _jsonable(event.attrs),
                                   "turn_id": event.turn_id})
        self.in_flight = call
        timeout_s = int(self.p["call_timeout_ms"]) / 1000.0
        try:
            async with asyncio.timeout(timeout_s):
                await self._drain(child, state.emits, event)
        except TimeoutError:
            await self._abandon(child, call, "call_timeout")
            raise TimeoutError(f"external node {self.label} did not finish a call within "
                               f"call_timeout_ms={self.p['call_timeout_ms']}") from None
        except asyncio.CancelledError:
            child.cancel(call, self.ctx.cancel.reason or "cancelled")  # hard cancel
            raise
        finally:
            self.in_flight = None
            child.end(call)
            self.ctx.telemetry.metric("external_call_seconds",
                                      (time.perf_counter_ns() - t0) / 1e9)

    async def _drain(self, child: ChildProcess, emits: asyncio.Queue[Any], event: Event) -> None:
        while True:
            msg = await emits.get()
            if msg is None:
                if child.limit_hit is not None:
                    self._limit_exceeded(child.limit_hit)
                raise child.failure()
            if isinstance(msg, EmitMsg):
                out = event.derive(msg.kind or event.kind, msg.payload, final=msg.final,
                                   attrs=msg.attrs)
                self.ctx.emit(out, msg.port)
            elif isinstance(msg, ErrorMsg):
                if msg.limit is not None:
                    self._limit_exceeded(msg.limit)
                    raise ResourceLimitError(
                        f"external node {self.label} exceeded {msg.limit}="
                        f"{self.p[msg.limit]}: {msg.message}")
                raise ExternalNodeError(f"external node {self.label} failed a call: "
                                        f"{msg.message}")
            elif isinstance(msg, Done):
                return

    async def _abandon(self, child: ChildProcess, call: int, why: str) -> None:
        """Cancel ``call`` in the child; kill the child if it does not acknowledge in grace."""
        state = child.calls.get(call)
        child.cancel(call, why)
        if state is None:
            return
        try:
            async with asyncio.timeout(int(self.p["cancel_grace_ms"]) / 1000.0):
                while True:
                    msg = await state.emits.get()
                    if msg is None or isinstance(msg, Done | ErrorMsg):
                        break
        except TimeoutError:
            await child.kill(f"killed: {why} not acknowledged within cancel_grace_ms")
            self.ctx.audit(f"external_killed:{self.manifest.name}:{why}")

    def _limit_exceeded(self, limit: str) -> None:
        """A call ran into the child's ``cpu_seconds`` or ``memory_mb`` limit (F-107): an
        audit record naming the limit and a ``external_limit_exceeded`` metric; the call then
        fails with :class:`~rspp.kernel.ResourceLimitError` (``resource_limit_exceeded``)."""
        self.ctx.audit(f"external_limit:{self.manifest.name}:{limit}={self.p[limit]}")
        self.ctx.telemetry.metric("external_limit_exceeded", 1.0, limit=limit)

    def _acked(self, call: int) -> None:
        self.ctx.audit(f"external_cancel_ack:{self.manifest.name}:call={call}")

    # ------------------------------------------------------------------ hooks
    async def on_start(self) -> None:
        """Start the child with the session, so the first event does not wait for it."""
        await self._child()

    def on_cancel(self, turn_id: str | None, reason: str) -> None:
        if self.child is not None and self.in_flight is not None:
            self.child.cancel(self.in_flight, reason)

    async def on_stop(self) -> None:
        child = self.child
        if child is None:
            return
        cpu = child.cpu_seconds()
        await child.stop(1.0)
        if cpu is not None:
            self.ctx.telemetry.metric("external_cpu_seconds", cpu)


def external_node_class(type_name: str, manifest: NodeManifest, package_dir: Path,
                        onboarded: Onboarded) -> type[ExternalNode]:
    """The node class of one onboarded package (ports from its manifest)."""
    attrs = {
        "type_name": type_name, "version": f"sha256:{onboarded.digest}",
        "inputs": tuple(manifest.inputs), "outputs": tuple(manifest.outputs),
        "port_types": {**manifest.inputs, **manifest.outputs},
        "manifest": manifest, "package_dir": package_dir, "onboarded": onboarded,
        "limiters": {}, "__doc__": manifest.description or f"External node {manifest.name}.",
    }
    return type(f"External_{manifest.name}", (ExternalNode,), attrs)
