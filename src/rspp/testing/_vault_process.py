"""The fake Vault (:mod:`rspp.testing._vault`) as its own process: start, stop, restart.

``VaultProcess(tmp_dir, keys={"rspp-state": "aes256-gcm96"})`` starts it on an ephemeral
port, waits for its ``VAULT_ADDR=`` line (not a sleep), and keeps its keys in a state file
so :meth:`stop` then :meth:`start` is a Vault outage followed by a recovery on the same
address with the same keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["VaultProcess"]


class VaultProcess:
    def __init__(self, workdir: Path, *, keys: dict[str, str], token: str = "vault-test-token",
                 start_timeout_s: float = 60.0) -> None:
        self.token = token
        self.keys = dict(keys)
        self._state = workdir / "vault-state.json"
        self._timeout = start_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._port = 0
        self.addr = ""

    @property
    def env(self) -> dict[str, str]:
        """``VAULT_ADDR`` and ``VAULT_TOKEN`` for a child process."""
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token}

    def start(self) -> VaultProcess:
        args = [sys.executable, "-m", "rspp.testing._vault", "--token", self.token,
                "--port", str(self._port), "--state", str(self._state)]
        for name, kind in self.keys.items():
            args += ["--key", f"{name}:{kind}"]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True, env=dict(os.environ))
        if self._proc.stdout is None:
            raise RuntimeError("the fake Vault's output is not a pipe")
        line = self._proc.stdout.readline()  # blocks until it listens (or exits)
        if not line.startswith("VAULT_ADDR="):
            self._proc.kill()
            raise RuntimeError(f"the fake Vault did not start: {line!r}")
        self.addr = line.strip().split("=", 1)[1]
        self._port = int(self.addr.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """A Vault outage: the process is killed; its address refuses connections."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=self._timeout)
            self._proc = None

    def call(self, method: str, path: str, body: dict[str, object] | None = None
             ) -> httpx.Response:
        """One request to the fake Vault as its operator (a rotation made in Vault)."""
        return httpx.request(method, f"{self.addr}/v1/transit/{path}", json=body,
                             headers={"X-Vault-Token": self.token}, timeout=30)

    def __enter__(self) -> VaultProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
