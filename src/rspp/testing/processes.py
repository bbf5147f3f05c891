"""Child processes of the ``rspp`` command line for end-to-end tests: :class:`RsppCli`
runs one command to completion, :class:`ServeProcess` keeps an ``rspp serve`` running on a
free port until it is terminated (SIGTERM: drain) or killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["RsppCli", "ServeProcess"]


def _check(condition: bool, detail: object) -> None:
    """Fail the calling test (``AssertionError``, as ``assert`` would) unless ``condition``."""
    if not condition:
        raise AssertionError(detail)


class RsppCli:
    """Runs the installed ``rspp`` command line (root app) in a child process, in ``cwd``."""

    def __init__(self, cwd: Path | None = None) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, timeout: float = 120,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from rspp.cli import main; main()", *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=self.cwd, env=env,
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``rspp run ARGS``."""
        return self("run", *args)

    def cp(self, *args: str, key: str, server: str) -> subprocess.CompletedProcess[str]:
        """``rspp cp ARGS`` as the API key ``key`` against the control plane ``server``
        (through RSPP_API_KEY / RSPP_SERVER; no other RSPP_* setting leaks in)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        env.update(RSPP_API_KEY=key, RSPP_SERVER=server)
        return subprocess.run(
            [sys.executable, "-c", "from rspp.cli import main; main()", "cp", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False)

    @staticmethod
    def ok(result: subprocess.CompletedProcess[str]) -> Any:
        """The JSON a command printed; fails the test unless it exited 0."""
        _check(result.returncode == 0, result.stderr)
        return json.loads(result.stdout)

    def replays_clean(self, timeline: Path, spec: Path, report: Path) -> None:
        """``rspp replay TIMELINE --spec SPEC``: no ORDERING, PLAN, OUTCOME or AUTHORITY
        divergence, exit 0 (fails the test otherwise)."""
        rep = self("replay", str(timeline), "--spec", str(spec), "--report", str(report))
        doc = json.loads(report.read_text())
        _check(all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME",
                                                         "AUTHORITY")), doc["findings"])
        _check(rep.returncode == 0, rep.stdout + rep.stderr)

    def validates_and_replays(self, timeline: Path, spec: Path) -> None:
        """``rspp contracts validate`` then ``rspp replay --spec SPEC`` of a served
        session's timeline: valid, no divergence but TIMING, exit 0 (fails the test
        otherwise; no RSPP_* setting leaks in)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        valid = self("contracts", "validate", str(timeline), env=env, timeout=180)
        _check(valid.returncode == 0, valid.stdout + valid.stderr)
        report = timeline.with_suffix(".replay.json")
        out = self("replay", str(timeline), "--spec", str(spec), "--report", str(report),
                   env=env, timeout=180)
        doc = json.loads(report.read_text())
        _check(all(n == 0 for c, n in doc["divergences"].items() if c != "TIMING"),
               doc["findings"])
        _check(out.returncode == 0, out.stdout + out.stderr)

    def say(self, text: str, out: Path) -> Path:
        """``rspp say TEXT -o OUT`` (offline espeak-ng); fails the test if it fails."""
        res = self("say", text, "-o", str(out), timeout=60)
        _check(res.returncode == 0, res.stderr)
        return out


class ServeProcess:
    """``rspp serve ARGS`` as a child process on a free port, ready when /readyz says so."""

    def __init__(self, *args: str, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RSPP_")},
               **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from rspp.cli import main; main()", "serve", "--port", "0",
             *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        self.banner: list[str] = []
        self.url = ""
        self.runtime_id = ""

    def wait_ready(self) -> ServeProcess:
        """Read the banner until the runtime says it is ready, then poll /readyz."""
        stdout = self.proc.stdout
        if stdout is None:
            raise AssertionError("rspp serve has no stdout pipe")
        while not self.url:
            line = stdout.readline()
            if not line:
                _, err = self.proc.communicate(timeout=30)
                raise AssertionError(f"rspp serve exited {self.proc.returncode}: {err}")
            self.banner.append(line.rstrip())
            m = re.search(r"runtime (\S+) ready on (http://\S+)", line)
            if m:
                self.runtime_id, self.url = m.group(1), m.group(2)
        while httpx.get(f"{self.url}/readyz", timeout=10).status_code != 200:
            _check(self.proc.poll() is None, self.proc.communicate())
            time.sleep(0.05)
        return self

    def set_policy(self, api_key: str, tenant: str, body: dict[str, Any]) -> None:
        """Publish ``tenant``'s policy config through the embedded control plane (for
        example ``{"recording_level": "L2"}``: its sessions keep what a replay needs);
        fails the test unless it is accepted."""
        r = httpx.post(f"{self.url}/v1/configs/policy/{tenant}", json={"body": body},
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
        _check(r.status_code < 300, r.text)

    def terminate(self, timeout: float = 60) -> tuple[int, str, str]:
        """SIGTERM; wait for the drain and exit; (status, rest of stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)
