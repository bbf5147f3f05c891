"""Cost of the external-node boundary (F-122, F-124): plain child vs sandboxed child.

For each mode a child process is started through the product's launcher
(:class:`rspp.nodes.external._child.ChildProcess`, the code an external node runs on) and
sent N text calls over ``rspp-external/1`` (MessagePack frames on its stdin/stdout), one
at a time, each answered by one ``emit`` and ``done``. Reported per mode: start-up CPU
(launcher + interpreter + SDK, the child's CPU from /proc), and per call the runtime's CPU
(this process, µs) and the child's CPU (µs), p50/p99 call wall time (ms; meaningless on a
loaded machine, CPU is the number to compare). The sandbox adds its set-up (namespace,
Landlock ruleset) once, at start; per-call cost should be the same in both modes.

Usage: ``python benchmarks/external_node.py [--quick] [--calls N]``; JSON last line.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile, quick_parser

from rspp.nodes.external._child import ChildOptions, ChildProcess
from rspp.nodes.external._node import _sandbox_reads

PROGRAM = """
from rspp_external import run

async def echo(event, emit):
    emit(str(event.payload).upper())

run(echo)
"""


async def measure(package: Path, sandbox: bool, calls: int) -> dict[str, float]:
    opts = ChildOptions(command=(sys.executable, "echo.py"), cwd=package, codec="msgpack",
                        label="bench", cpu_seconds=600, memory_mb=1024, max_open_files=256,
                        sandbox=sandbox,
                        read_paths=_sandbox_reads(package, []) if sandbox else ())
    child = ChildProcess(opts)
    await child.start({"node_id": "bench", "session_id": "bench", "config": {}}, 60.0)
    start_cpu = child.cpu_seconds() or 0.0
    walls: list[float] = []
    parent0 = time.process_time()
    for n in range(1, calls + 1):
        t0 = time.perf_counter()
        state = child.begin(n, {"port": "text", "kind": "text", "payload": "hello there",
                                "final": True, "attrs": {}, "turn_id": "t"})
        while True:
            msg = await state.emits.get()
            if msg is None:
                raise RuntimeError(f"child died: {child.dead}")
            if type(msg).__name__ in ("Done", "ErrorMsg"):
                break
        child.end(n)
        walls.append((time.perf_counter() - t0) * 1000)
    parent = time.process_time() - parent0
    child_cpu = (child.cpu_seconds() or 0.0) - start_cpu
    report = child.report
    await child.stop(2.0)
    return {"start_cpu_ms": round(start_cpu * 1000, 1),
            "runtime_cpu_us_per_call": round(parent / calls * 1e6, 1),
            "child_cpu_us_per_call": round(child_cpu / calls * 1e6, 1),
            "call_wall_p50_ms": round(percentile(walls, 50), 3),
            "call_wall_p99_ms": round(percentile(walls, 99), 3),
            "landlock_abi": float(report.get("landlock_abi", 0) or 0),
            "net_namespace": float(bool(report.get("net_namespace")))}


async def main_async(calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp)
        (package / "echo.py").write_text(PROGRAM)
        out: dict[str, object] = {"benchmark": "external_node", "calls": calls}
        for mode, sandbox in (("plain", False), ("sandbox", True)):
            out[mode] = await measure(package, sandbox, calls)
        return out


def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    calls = 200 if args.quick else args.calls
    result = asyncio.run(main_async(calls))
    for mode in ("plain", "sandbox"):
        print(mode, result[mode])
    emit(result)


if __name__ == "__main__":
    main()
