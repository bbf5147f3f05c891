"""``rspp replay``'s start-up imports only what a replay uses (issue 12).

The replay process runs the real command line on a recorded demo session and, as it
exits, lists the modules it imported: the live transports (their cffi resampler
bindings, the web framework) and the exporters' OpenTelemetry are not among them,
while the replay's own modules are (the command did replay, and exited 0).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: the real entry point, with the imported modules written to stderr at exit
_MAIN = ("import atexit, sys\n"
         "def _modules():\n"
         "    sys.stderr.write('\\nMODULES ' + ' '.join(sorted(sys.modules)))\n"
         "atexit.register(_modules)\n"
         "from rspp.cli import main\n"
         "main()\n")
_NOT_IMPORTED = ("rspp.transports", "rspp.runner._live", "rspp.runner._assembly",
                 "starlette", "cffi", "opentelemetry", "rspp.observability._tracing",
                 "rspp.observability._http_sink")


def test_replay_does_not_import_live_transports_or_tracing(
        tmp_path: Path, demo_replay_dir: Callable[[Path, int], Path]) -> None:
    work = demo_replay_dir(tmp_path, 2)
    res = subprocess.run([sys.executable, "-c", _MAIN, "replay", str(work / "baseline.jsonl"),
                          "--spec", str(work / "v1.yaml")],
                         capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "PASS" in res.stdout
    modules = set(res.stderr.rpartition("MODULES ")[2].split())
    assert {"rspp.replay._engine", "rspp.runner._replay_demo",
            "rspp.observability._compare"} <= modules
    loaded = sorted(m for m in modules for top in _NOT_IMPORTED
                    if m == top or m.startswith(top + "."))
    assert loaded == []


def test_runner_and_observability_names_still_resolve() -> None:
    """The lazily imported packages still export every name of their ``__all__``."""
    res = subprocess.run([sys.executable, "-c",
                          "import rspp.runner as r, rspp.observability as o\n"
                          "missing = [n for m in (r, o) for n in m.__all__ if not hasattr(m, n)]\n"
                          "print(missing)\n"
                          "from rspp.runner import nope\n"],
                         capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    assert res.stdout.strip() == "[]"
    assert "cannot import name 'nope' from 'rspp.runner'" in res.stderr
