"""End-to-end fixtures: the real ``rspp`` command in a subprocess, and spoken WAVs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


class RsppCli:
    """Runs the installed ``rspp`` command line (root app) in a child process."""

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from rspp.cli import main; main()", *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rspp run ARGS``."""
        return self("run", *args)

    def say(self, text: str, out: Path) -> Path:
        """``rspp say TEXT -o OUT`` (offline espeak-ng); fails the test if it fails."""
        res = self("say", text, "-o", str(out), timeout=60)
        assert res.returncode == 0, res.stderr
        return out


@pytest.fixture(scope="session")
def rspp_cli() -> RsppCli:
    return RsppCli()


@pytest.fixture(scope="session")
def spoken(rspp_cli: RsppCli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A question and an interruption, synthesised once per test session."""
    d = tmp_path_factory.mktemp("spoken")
    return {
        "question": rspp_cli.say("what is the weather like today", d / "q.wav"),
        "interrupt": rspp_cli.say("what is your name", d / "i.wav"),
    }
