"""F-163: `rspp lint --as-of` walks a deprecated field through its lifecycle: a warning with
the enforcement and removal dates and the migration, then an error, then removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # 7 CLI runs on a loaded machine

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def lint(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    return subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "lint", str(spec), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def test_a_deprecated_param_warns_then_is_refused_then_removed(tmp_path: Path) -> None:
    text = VOICE.read_text()
    assert "endpointing: silence" in text
    spec = tmp_path / "old.yaml"
    spec.write_text(text.replace("endpointing: silence", "policy: silence"))
    where = f"{spec}:33:30: "

    warned = lint(spec, "--as-of", "2027-01-10")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert warned.stdout.splitlines() == [
        where + "warning: nodes[0].params.policy: param 'policy' of node type 'vad' is "
        "deprecated since 2026-11-28: refused from 2027-06-01, removed on 2027-12-01",
        "    hint: rename params.policy to params.endpointing (same values)"]
    strict = lint(spec, "--as-of", "2027-01-10", "--strict")  # CI can refuse it early
    assert strict.returncode == 1

    enforced = lint(spec, "--as-of", "2027-06-01")
    assert enforced.returncode == 1
    assert enforced.stdout.startswith(
        where + "nodes[0].params.policy: param 'policy' of node type 'vad' is deprecated and "
        "refused since 2027-06-01 (removed on 2027-12-01)")
    assert "rename params.policy to params.endpointing" in enforced.stdout

    removed = lint(spec, "--as-of", "2027-12-01")
    assert removed.returncode == 1 and "was removed on 2027-12-01" in removed.stdout

    migrated = tmp_path / "new.yaml"
    migrated.write_text(text)
    assert lint(migrated, "--as-of", "2027-12-01", "--strict").returncode == 0
    bad = lint(spec, "--as-of", "2027-13-01")
    assert bad.returncode == 2 and "--as-of" in bad.stderr
