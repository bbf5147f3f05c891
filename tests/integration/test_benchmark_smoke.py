"""The benchmarks built on ``benchmarks/_real_session.py`` still run (``--smoke``).

``turn_open``, ``session_cpu``, ``cancel_fence`` and ``debug_capture`` assemble real
sessions as ``rspp run`` does around mock providers that stand in for ``build_provider``;
a change of the product's signatures once broke all four silently (nothing ran them).
Each runs here with ``--smoke`` (a real-time session or two) in its own process, the
four at once: each exits 0, its last line is its JSON result, and its sessions did what
the benchmark measures (turns opened, no reply audio past a cancel fence, debug records
kept).
The numbers themselves mean nothing at this size and are not checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _started(name: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(BENCHMARKS / f"{name}.py"), "--smoke"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-4000:]
    lines = out.strip().splitlines()
    assert lines, err[-4000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@pytest.mark.timeout(200)
def test_the_real_session_benchmarks_run_with_smoke() -> None:
    procs = {name: _started(name)
             for name in ("turn_open", "session_cpu", "cancel_fence", "debug_capture")}
    try:
        got = {name: _result(proc) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert {name: r["benchmark"] for name, r in got.items()} == {n: n for n in procs}
    # (what depends on the machine's pace, e.g. whether a barge-in landed in the reply
    # of a loaded machine's session, is not asserted)
    assert got["turn_open"]["turns_measured"][1] >= 1  # (--smoke: no idle phase)
    assert got["turn_open"]["sessions_loaded"] == 1
    assert got["session_cpu"]["real_time_sessions"] == 1
    assert got["session_cpu"]["offline_cpu_ms_per_media_s"] > 0
    assert got["cancel_fence"]["chunks_after_fence"] == 0  # the fence holds at any pace
    assert got["debug_capture"]["capture"]["target_debug_records"] > 0
    assert got["debug_capture"]["baseline"]["target_debug_records"] == 0
