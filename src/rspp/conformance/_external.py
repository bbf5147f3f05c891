"""The external-node conformance suite: a package's program against ``rspp-external/1``.

The program named by the package manifest runs exactly as a session would run it (the
trusted launcher, the manifest's codec, the default rlimits of an external node) and is
driven over the boundary by the runtime's own child driver
(:class:`~rspp.nodes.external._child.ChildProcess`): handshake, calls, concurrent calls,
cancel and stop. Supply-chain checks (SBOM, attestation) are ``rspp node check``'s; a
package needs none to be checked here.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rspp.conformance._suite import Check, Violation, run_checks
from rspp.nodes.external._child import ChildOptions, ChildProcess, ExternalNodeError
from rspp.nodes.external._manifest import load_manifest
from rspp.nodes.external._node import EXTERNAL_PARAMS
from rspp.nodes.external._wire import Done, EmitMsg, ErrorMsg

if TYPE_CHECKING:
    from rspp.conformance._profile import Profile
    from rspp.conformance._report import SuiteResults
    from rspp.nodes.external._manifest import NodeManifest

__all__ = ["check_external_node"]

_DEFAULTS: dict[str, Any] = {p.name: p.default for p in EXTERNAL_PARAMS}
#: generous bounds for a loaded machine: the contract is "answers", not "answers fast"
START_S, CALL_S, GRACE_S, STOP_S = 30.0, 20.0, 5.0, 5.0


def _tail(child: ChildProcess) -> str:
    return f" (stderr: {' | '.join(child.stderr_tail)})" if child.stderr_tail else ""


class _Driver:
    """One child of the package under test, and the calls made to it."""

    def __init__(self, manifest: NodeManifest, base: Path) -> None:
        import sys

        self.manifest = manifest
        command = tuple(sys.executable if a == "{python}" else a for a in manifest.command)
        self.opts = ChildOptions(
            command=command, cwd=base, codec=manifest.codec,  # type: ignore[arg-type]
            label=repr(manifest.name), cpu_seconds=int(_DEFAULTS["cpu_seconds"]),
            memory_mb=int(_DEFAULTS["memory_mb"]),
            max_open_files=int(_DEFAULTS["max_open_files"]), sandbox=False)
        self.child: ChildProcess | None = None
        self.calls = 0
        port, kind = next(iter(manifest.inputs.items()), ("in", "any"))
        self.port = port
        self.event: dict[str, Any] = {
            "port": port, "kind": "audio_chunk" if kind == "audio" else "text",
            "payload": bytes(640) if kind == "audio" and manifest.codec == "msgpack"
            else "conformance check", "final": True, "attrs": {}, "turn_id": "conformance-1"}

    def alive(self) -> ChildProcess:
        child = self.child
        if child is None:
            raise Violation("the program never became ready (see handshake)")
        if child.dead is not None:
            raise Violation(f"the program is gone: {child.dead}{_tail(child)}")
        return child

    async def start(self) -> str:
        self.child = ChildProcess(self.opts)
        try:
            await self.child.start({"node_id": "conformance", "session_id": "conformance",
                                    "config": {}}, START_S)
        except ExternalNodeError as exc:
            raise Violation(str(exc)) from None
        return f"ready at protocol 1 in {self.opts.codec}"

    async def ensure(self) -> None:
        """Start the program when the handshake category was not run (skipped)."""
        if self.child is None:
            await self.start()

    def begin(self) -> tuple[int, asyncio.Queue[Any]]:
        child = self.alive()
        self.calls += 1
        return self.calls, child.begin(self.calls, dict(self.event)).emits

    async def finish(self, call: int, emits: asyncio.Queue[Any], within_s: float,
                     what: str) -> tuple[int, Done]:
        """Emits of ``call`` until its ``done``; a Violation for anything else."""
        child = self.alive()
        n = 0
        try:
            async with asyncio.timeout(within_s):
                while True:
                    msg = await emits.get()
                    if msg is None:
                        raise Violation(f"{what}: the program died during call {call}: "
                                        f"{child.dead}{_tail(child)}")
                    if isinstance(msg, ErrorMsg):
                        raise Violation(f"{what}: call {call} answered `error`: "
                                        f"{msg.message}")
                    if isinstance(msg, Done):
                        return n, msg
                    if isinstance(msg, EmitMsg):
                        if msg.port is not None and msg.port not in self.manifest.outputs:
                            raise Violation(f"{what}: call {call} emitted on port "
                                            f"{msg.port!r}, not a declared output "
                                            f"({', '.join(self.manifest.outputs)})")
                        n += 1
        except TimeoutError:
            raise Violation(f"{what}: call {call} got no `done` within {within_s:g} s"
                            ) from None
        finally:
            child.end(call)

    async def call(self) -> str:
        await self.ensure()
        call, emits = self.begin()
        n, _ = await self.finish(call, emits, CALL_S, "call")
        return f"call {call}: {n} emit(s), then done"

    async def concurrent(self) -> str:
        await self.ensure()
        (a, qa), (b, qb) = self.begin(), self.begin()
        got = await asyncio.gather(self.finish(a, qa, CALL_S, "concurrent_calls"),
                                   self.finish(b, qb, CALL_S, "concurrent_calls"))
        return f"calls {a} and {b} in flight at once: {got[0][0]} and {got[1][0]} emit(s)"

    async def cancel(self) -> str:
        await self.ensure()
        call, emits = self.begin()
        self.alive().cancel(call, "conformance")
        _, done = await self.finish(call, emits, GRACE_S, "cancel")
        after = await self.call()
        return (f"call {call} answered the cancel ({'cancelled' if done.cancelled else 'done'})"
                f"; then {after}")

    async def stop(self) -> str:
        await self.ensure()
        child = self.alive()
        proc = child.proc
        if proc is None:
            raise Violation("no process")
        child.send({"type": "stop"})
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_S):
                code = await proc.wait()
        except TimeoutError:
            raise Violation(f"the program still runs {STOP_S:g} s after `stop` and a closed "
                            "stdin") from None
        if code != 0:
            raise Violation(f"the program {child.dead or f'exited with code {code}'} after "
                            f"`stop`{_tail(child)}")
        return "exited 0 after stop"

    async def close(self) -> None:
        if self.child is not None:
            with contextlib.suppress(Exception):
                await self.child.kill("conformance run over")


def check_external_node(manifest_path: Path, profile: Profile,
                        skip: tuple[str, ...] = ()) -> SuiteResults:
    """Run ``profile``'s categories against the package whose manifest is ``manifest_path``
    (raises ExternalNodeRefused, naming the field, for a manifest that cannot load)."""
    manifest = load_manifest(manifest_path)
    base = manifest_path.resolve().parent
    subject = f"{manifest.name} {manifest.version} ({manifest_path})"
    return asyncio.run(_run(_Driver(manifest, base), profile, subject, skip))


async def _run(driver: _Driver, profile: Profile, subject: str,
               skip: tuple[str, ...]) -> SuiteResults:
    checks: dict[str, Check] = {
        "handshake": driver.start, "call": driver.call, "concurrent_calls": driver.concurrent,
        "cancel": driver.cancel, "stop": driver.stop,
    }
    try:
        return await run_checks(profile, subject, checks, skip)
    finally:
        await driver.close()
