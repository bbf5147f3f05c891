"""Timeline tools on large timelines: MB/s and peak RSS of slo report, contracts validate,
timeline show and replay.

A session of the replay demo pipeline (deterministic nodes, virtual time, recording
level L2 with audio ingress payloads) is recorded once. ``sessions.jsonl`` repeats it
with a new ``session_id`` per copy until it reaches ``--size-mb`` (a valid
many-session timeline); ``rspp slo report``, ``rspp contracts validate`` and ``rspp
timeline show --type commit`` read it. ``rspp replay`` needs one session, so single
sessions of two sizes are recorded directly (time should grow linearly with size): 240
and 5300 utterances, about 9 and 200 MB (``--quick``: 10 and 40). ``--tools replay_many``
also replays ``sessions.jsonl`` itself, session by session, in one process (``--jobs 1``)
and in one worker process per CPU (``--jobs 0``; peak RSS then also summed over the
workers, sampled from ``/proc``). The single sessions are replayed with ``--compare
process`` (the comparison in a second process: ``peak_rss_mb_sum`` sums both processes,
``cpu_s_main`` is the replay process's own CPU, what bounds the wall time when the other
core is free), the large one again with ``--compare inline``.

Every tool runs as its own ``rspp`` process; wall time, CPU time and peak RSS come
from ``os.wait4`` of that process (its waited-for children included: workers, the
comparison process). MB/s is reported per wall second and per CPU
second (the CPU figure is what the tool costs on a shared, loaded machine).
Targets: >= 20 MB/s and peak RSS < 200 MB on a 200 MB timeline. Last line: JSON.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
from _common import emit, quick_parser

_SEED = "session-1"


async def _record(utterances: int) -> list[dict[str, object]]:
    from rspp.replay import RigOptions
    from rspp.runner import (
        DEMO_PROVIDER_TYPES,
        DEMO_SPEC,
        demo_frames,
        demo_registry,
        record_session,
    )
    from rspp.spec import compile_spec, parse_spec_text

    graph = compile_spec(parse_spec_text(DEMO_SPEC.format(version="1.0.0", prefix="heard: ")))
    return await record_session(graph, demo_frames(utterances), registry=demo_registry(),
                                options=RigOptions(session_id=_SEED,
                                                   provider_node_types=DEMO_PROVIDER_TYPES))


async def _record_to(path: Path, utterances: int, silence: int = 10) -> None:
    """Record one session straight to ``path`` (lines written as produced, none kept);
    each utterance is 8 speech frames and ``silence`` silent 20 ms frames (one turn)."""
    from rspp.replay import RigOptions, SessionRig
    from rspp.runner import (
        DEMO_PROVIDER_TYPES,
        DEMO_SPEC,
        demo_frames,
        demo_registry,
        node_session,
    )
    from rspp.spec import compile_spec, parse_spec_text

    graph = compile_spec(parse_spec_text(DEMO_SPEC.format(version="1.0.0", prefix="heard: ")))
    with path.open("wb") as f:
        rig = SessionRig(graph, registry=demo_registry(), session_factory=node_session,
                         options=RigOptions(session_id=_SEED,
                                            provider_node_types=DEMO_PROVIDER_TYPES))
        def write(line: dict[str, object]) -> None:
            f.write(msgspec.json.encode(line) + b"\n")

        rig.sink = write
        rig.keep = lambda line: None
        await rig.start()
        try:
            for at_ms, ev in demo_frames(utterances, silence=silence):
                await rig.advance_to(at_ms)
                rig.ingress(ev, "audio")
                await rig.settle()
        finally:
            await rig.stop()


def _encode(lines: list[dict[str, object]]) -> bytes:
    return b"".join(msgspec.json.encode(line) + b"\n" for line in lines)


def _write_sessions(seed: bytes, path: Path, size: int) -> int:
    """Repeat ``seed`` with a fresh session id per copy until ``size`` bytes; returns bytes.

    The id is replaced everywhere it occurs (``session_id``, and the event and turn ids
    made from it), so every copy is a session ``rspp replay`` reproduces."""
    old = _SEED.encode()
    written = copy = 0
    with path.open("wb") as f:
        while written < size:
            chunk = seed.replace(old, f"s{copy:06d}".encode())
            f.write(chunk)
            written += len(chunk)
            copy += 1
    return written


# the tool reports its own peak RSS (VmHWM) as it exits: ``ru_maxrss`` from wait4 also
# counts the forked copy of this (large) benchmark process before ``exec``
_RUN = ("import atexit, resource, sys\n"
        "def _hwm():\n"
        "    own = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    sys.stderr.write('\\nCPU_SELF %.3f' % (own.ru_utime + own.ru_stime))\n"
        "    for row in open('/proc/self/status'):\n"
        "        if row.startswith('VmHWM:'):\n"
        "            sys.stderr.write('\\nVmHWM_KB ' + row.split()[1] + '\\n')\n"
        "atexit.register(_hwm)\n"
        "from rspp.cli import main\n"
        "main()\n")


def _children_hwm(pid: int, stop: threading.Event, peaks: dict[int, int]) -> None:
    """Sample the peak RSS (VmHWM, kB) of ``pid``'s child processes (``rspp replay``'s
    workers) until ``stop``; VmHWM only grows, so the last sample is each one's peak."""
    while not stop.wait(0.2):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                for row in Path(f"/proc/{child}/status").read_text().splitlines():
                    if row.startswith("VmHWM:"):
                        peaks[int(child)] = max(peaks.get(int(child), 0), int(row.split()[1]))
            except (OSError, ValueError):
                continue


def _measure(args: list[str], size: int) -> dict[str, Any]:
    """Run ``rspp ARGS`` in its own process: wall, CPU (its own and its workers'), peak
    RSS (its own, and summed with its workers'), exit status."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _RUN, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    stop, peaks = threading.Event(), {}
    sampler = threading.Thread(target=_children_hwm, args=(proc.pid, stop, peaks), daemon=True)
    sampler.start()
    err = proc.stderr.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    mb = size / 1e6
    err, _, hwm = err.rpartition("VmHWM_KB ")
    peak_kb = int(hwm.strip()) if hwm.strip().isdigit() else usage.ru_maxrss
    err, _, own = err.rpartition("CPU_SELF ")
    out = {"mb": round(mb, 1), "exit": proc.returncode, "wall_s": round(wall, 2),
           "cpu_s": round(cpu, 2), "mb_per_s_wall": round(mb / wall, 1),
           "mb_per_s_cpu": round(mb / cpu, 1) if cpu else None,
           "peak_rss_mb": round(peak_kb / 1024, 1),
           "stderr": err.strip()[:200]}
    if peaks:  # CPU above counts the waited-for workers too (rusage of the process tree)
        out["workers"] = len(peaks)
        # the rspp process alone: with its children on the other core, what bounds the wall
        # time on an idle 2-core machine (a one-session replay with its comparison process)
        if own.strip():
            out["cpu_s_main"] = float(own.strip())
            out["mb_per_s_cpu_main"] = round(mb / float(own.strip()), 1)
        out["peak_rss_mb_sum"] = round((peak_kb + sum(peaks.values())) / 1024, 1)
    return out


#: (utterances, silent frames per utterance) of the sessions ``replay_costs`` replays:
#: start-up only, turn-dense (the demo: 18 frames a turn), turn-sparse (100 frames a turn)
_COST_SESSIONS = {"startup": (3, 10), "dense": (600, 10), "sparse": (100, 92)}
_COST_SESSIONS_QUICK = {"startup": (3, 10), "dense": (100, 10), "sparse": (20, 92)}


def _replay_costs(root: Path, spec: Path, quick: bool) -> dict[str, Any]:
    """``rspp replay``'s CPU per 20 ms ingress frame and per turn.

    Three single sessions differ only in how many silent frames separate the turns; the
    CPU beyond start-up of the dense and the sparse one gives two equations
    ``frames * f + turns * t`` solved for ``f`` (per frame: reading, feeding, recording and
    comparing an audio frame) and ``t`` (per turn: its lifecycle, plan, node outputs,
    records and their comparison). Each replay runs twice; the lower CPU counts."""
    runs: dict[str, dict[str, Any]] = {}
    for name, (utterances, silence) in (_COST_SESSIONS_QUICK if quick
                                        else _COST_SESSIONS).items():
        path = root / f"costs-{name}.jsonl"
        asyncio.run(_record_to(path, utterances, silence))
        best = min((_measure(["replay", str(path), "--spec", str(spec)], path.stat().st_size)
                    for _ in range(2)), key=lambda run: run["cpu_s"])
        best.update(frames=utterances * (8 + silence), turns=utterances)
        runs[name] = best
    base = runs["startup"]["cpu_s"]
    (f1, t1, c1), (f2, t2, c2) = ((runs[n]["frames"], runs[n]["turns"], runs[n]["cpu_s"] - base)
                                  for n in ("dense", "sparse"))
    per_turn = (c1 * f2 - c2 * f1) / (t1 * f2 - t2 * f1)
    per_frame = (c1 - t1 * per_turn) / f1
    return {"runs": {n: {k: r[k] for k in ("mb", "frames", "turns", "cpu_s", "peak_rss_mb",
                                          "exit")} for n, r in runs.items()},
            "startup_cpu_s": base, "cpu_us_per_frame": round(per_frame * 1e6, 1),
            "cpu_ms_per_turn": round(per_turn * 1e3, 3)}


def main() -> None:
    parser = quick_parser(__doc__)
    parser.add_argument("--size-mb", type=float, default=200.0,
                        help="size of the many-session timeline (default 200)")
    parser.add_argument("--replay-utterances", type=int, nargs=2, default=None,
                        help="utterances of the two single-session replay inputs")
    parser.add_argument("--tools", nargs="+", default=["slo_report", "contracts_validate",
                                                       "timeline_show", "replay"],
                        help="which tools to measure (default: all four; replay_many: "
                        "rspp replay of the many-session timeline, --jobs 1 and 0; "
                        "replay_costs: rspp replay's CPU per 20 ms frame and per turn)")
    ns = parser.parse_args()
    size_mb = 10.0 if ns.quick else ns.size_mb
    small, large = ns.replay_utterances or ((10, 40) if ns.quick else (240, 5300))
    results: dict[str, Any] = {"benchmark": "timeline_tools", "quick": ns.quick}
    with tempfile.TemporaryDirectory(prefix="rspp-bench-") as tmp:
        root = Path(tmp)
        seed = _encode(asyncio.run(_record(20)))
        sessions = root / "sessions.jsonl"
        size = _write_sessions(seed, sessions, int(size_mb * 1e6))
        tools = {
            "slo_report": ["slo", "report", "--json", str(sessions)],
            "contracts_validate": ["contracts", "validate", str(sessions)],
            "timeline_show": ["timeline", "show", "--type", "commit", str(sessions)],
        }
        for name, args in tools.items():
            if name not in ns.tools:
                continue
            results[name] = _measure(args, size)
            print(name, results[name], file=sys.stderr, flush=True)
        if not {"replay", "replay_many", "replay_costs"} & set(ns.tools):
            emit(results)
            return
        from rspp.runner import DEMO_SPEC

        spec = root / "demo.yaml"
        spec.write_text(DEMO_SPEC.format(version="1.0.0", prefix="heard: "))
        if "replay_costs" in ns.tools:
            results["replay_costs"] = _replay_costs(root, spec, ns.quick)
            print("replay_costs", results["replay_costs"], file=sys.stderr, flush=True)
        if "replay_many" in ns.tools:  # the many-session timeline: one process, then workers
            many = {f"jobs_{jobs}": _measure(["replay", str(sessions), "--spec", str(spec),
                                              "--jobs", str(jobs)], size)
                    for jobs in (1, 0)}
            results["replay_many"] = many
            print("replay_many", many, file=sys.stderr, flush=True)
        if "replay" not in ns.tools:
            emit(results)
            return
        replays = []
        for utterances in (small, large):
            path = root / f"replay-{utterances}.jsonl"
            asyncio.run(_record_to(path, utterances))
            run = _measure(["replay", str(path), "--spec", str(spec), "--compare", "process"],
                           path.stat().st_size)
            replays.append(run)
            print(f"replay {utterances} utterances", run, file=sys.stderr, flush=True)
        # the same replay comparing in this process (--compare inline; the runs above compare
        # in a second process: its CPU is in wait4's rusage, cpu_s_main is the rspp process's)
        inline = _measure(["replay", str(path), "--spec", str(spec), "--compare", "inline"],
                          path.stat().st_size)
        print(f"replay {large} utterances, --compare inline", inline, file=sys.stderr,
              flush=True)
        small_run, large_run = replays
        growth = None
        if small_run["cpu_s"] and small_run["mb"]:
            growth = (large_run["cpu_s"] / small_run["cpu_s"]) / (large_run["mb"] / small_run["mb"])
        results["replay"] = {"small": replays[0], "large": replays[1], "large_inline": inline,
                             "cpu_per_mb_growth": round(growth, 2) if growth else None}
    emit(results)


if __name__ == "__main__":
    main()
