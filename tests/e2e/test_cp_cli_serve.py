"""``rspp cp serve`` as a real process: SQLite default file, admin key from the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rspp.controlplane import ControlPlaneClient
from rspp.controlplane._server import free_port

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-c", "from rspp.cli import main; main()", "cp"]


def test_serve_process_accepts_cli_commands(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    missing = subprocess.run(
        [*CLI, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "RSPP_ADMIN_KEY" in missing.stderr
    env["RSPP_ADMIN_KEY"] = "env-admin"
    # a key file that holds no Ed25519 key is refused at start, naming the option
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    refused = subprocess.run(
        [*CLI, "serve", "--port", str(port), "--token-key-file", str(bad_key)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "--token-key-file" in refused.stderr and "Traceback" not in refused.stderr
    key_file = tmp_path / "token.pem"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--token-key-file", str(key_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        client_env = dict(env, RSPP_SERVER=url, RSPP_API_KEY="env-admin")
        created = subprocess.run(
            [*CLI, "keys", "create", "--role", "viewer"],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        viewer = created.stdout.strip().splitlines()[-1]
        verify = subprocess.run(
            [*CLI, "audit", "--verify", "--api-key", viewer],
            env=client_env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert verify.returncode == 0 and "1 entries" in verify.stdout
        assert (tmp_path / "rspp-controlplane.db").exists()  # the embedded default store
        assert key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_db_option_takes_a_plain_path_and_reports_a_bad_one_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_ADMIN_KEY"] = "env-admin"
    for bad in (str(tmp_path / "no" / "such" / "dir" / "cp.db"), "mysql://db/cp"):
        res = subprocess.run([*CLI, "serve", "--db", bad, "--port", str(free_port())],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                             check=False)
        assert res.returncode == 2, res
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr and "db" in res.stderr
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--db", "plain.db", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "rspp control plane on" in banner and "sqlite" in banner, proc.communicate()
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        assert (tmp_path / "plain.db").exists()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


async def test_sigint_answers_a_held_control_channel_poll_and_the_process_exits(
        tmp_path: Path) -> None:
    """A runtime's control channel holds a long poll (up to 10 s) at all times: SIGINT
    answers it at once (``stopping``) instead of letting the graceful shutdown wait it out,
    so the process stops while the poll was open."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_ADMIN_KEY"] = "env-admin"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        *CLI, "serve", "--port", str(port), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert "rspp control plane on" in (await proc.stdout.readline()).decode()
        client = ControlPlaneClient(url, "env-admin")
        await client.register_runtime("rt-a", "ws://rt-a")
        poll = asyncio.ensure_future(client.runtime_notices("rt-a", (), 10_000))
        held = 'rspp_cp_long_polls_waiting{kind="control_channel"} 1.0'
        async with httpx.AsyncClient(headers={"Authorization": "Bearer env-admin"}) as http:
            while held not in (await http.get(f"{url}/metrics")).text:
                assert not poll.done(), poll.result()
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        answer = await poll
        assert answer.stopping and answer.notices == []
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err
    assert "control plane stopped" in out.decode()
