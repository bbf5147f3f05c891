"""Per-pipeline gate thresholds in the spec, checked by ``rspp slo report --spec``
(NF-001, NF-003).

A spec's ``slo:`` sets its own bounds (end-to-end p50/p95, cancel-fence p95/p99, turn
open, first output); ``rspp slo report TIMELINE --spec SPEC`` gates the recorded
timeline on them: the same timeline passes a spec whose bounds it meets and fails (exit
1, the gate and its configured threshold named) one whose end-to-end p95 it cannot meet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

#: the voice assistant on the Deepgram (fake) STT; ``%s``: the spec's SLO thresholds
SPEC = voice_assistant_spec("slo-gated", stt="{primary: deepgram}", tail="slo: {%s}")


def _rspp(*args: str, cwd: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=240, check=False, cwd=cwd,
                          env=full)


def _gate(out: str, n: int) -> dict[str, object]:
    return next(g for g in json.loads(out)["gates"] if g["gate"] == n)


def test_the_specs_own_thresholds_gate_the_recorded_timeline(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    loose, strict = tmp_path / "loose.yaml", tmp_path / "strict.yaml"
    loose.write_text(SPEC % "end_to_end_p50_ms: 600000, end_to_end_p95_ms: 600000, "
                            "turn_open_p95_ms: 600000, first_output_p95_ms: 600000, "
                            "cancel_fence_p99_ms: 600000")
    strict.write_text(SPEC % "end_to_end_p95_ms: 1, cancel_fence_p95_ms: 40")
    tl = tmp_path / "t.jsonl"
    with FakeProviderServers() as fakes:
        run = _rspp("run", str(loose), "--input", str(spoken["question"]), "--timeline",
                    str(tl), cwd=tmp_path, env=fakes.env)
    assert run.returncode == 0, run.stderr
    ok = _rspp("slo", "report", str(tl), "--spec", str(loose), "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    e2e = _gate(ok.stdout, 7)
    assert e2e["threshold"] == "p50 <= 600000 ms, p95 <= 600000 ms" and e2e["pass"] is True
    assert _gate(ok.stdout, 3)["threshold"] == "p95 <= 150 ms, p99 <= 600000 ms"
    bad = _rspp("slo", "report", str(tl), "--spec", str(strict), "--json", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    e2e = _gate(bad.stdout, 7)
    assert e2e["threshold"] == "p50 <= 1500 ms, p95 <= 1 ms" and e2e["pass"] is False
    assert e2e["p95"] is not None and float(e2e["p95"]) > 1  # type: ignore[arg-type]
    assert _gate(bad.stdout, 3)["threshold"] == "p95 <= 40 ms"
    # a bad threshold in the spec is refused naming its field
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(SPEC % "end_to_end_p95: 100")
    res = _rspp("slo", "report", str(tl), "--spec", str(wrong), cwd=tmp_path)
    assert res.returncode == 2 and "end_to_end_p95" in res.stderr, res.stderr
