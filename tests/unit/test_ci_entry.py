"""The CI entry point `.ci/run` parses, installs each Debian package the suites need once,
and ends by calling the README's test command (a bad merge once left it unparsable: CI
would have been red before running a test)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

CI_RUN = Path(__file__).resolve().parents[2] / ".ci" / "run"


def test_ci_entry_parses_installs_each_package_once_and_runs_make_test() -> None:
    parsed = subprocess.run(["bash", "-n", str(CI_RUN)], capture_output=True, text=True,
                            timeout=30)
    assert parsed.returncode == 0, parsed.stderr
    text = CI_RUN.read_text()
    installs = re.findall(r"^    apt-get -y install (\S+) ", text, re.M)
    assert sorted(installs) == ["chromium", "faketime", "stress-ng"], installs
    commands = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands[-1] == "make test", commands[-1]
