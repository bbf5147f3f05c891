"""``rspp serve`` as a real process: embedded control plane, probes, registration, drain.

The process publishes the offline voice assistant into its embedded control plane
(SQLite file), registers its runtime through the control-plane API, reports ready
on /readyz, serves /metrics, drains on SIGTERM and exits 0 after deregistering.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from rspp.controlplane import ControlPlane, ControlPlaneSettings
from rspp.controlplane._server import free_port

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-e2e-admin-key"
VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"


async def _runtimes(db: str) -> list[str]:
    cp = await ControlPlane.open(ControlPlaneSettings(db_url=db, admin_key=KEY))
    try:
        async with cp.store.engine.connect() as conn:
            return [r.runtime_id for r in await cp.routing.all_in(conn)]
    finally:
        await cp.close()


def test_embedded_serve_registers_reports_ready_and_drains_on_sigterm(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    srv = serve_process("--db", db, "--api-key", KEY, "--heartbeat-interval", "0.2").wait_ready()
    assert any("pipeline voice-assistant@1.0.0" in line for line in srv.banner), srv.banner
    assert httpx.get(f"{srv.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{srv.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    auth = {"Authorization": f"Bearer {KEY}"}
    runtimes = httpx.get(f"{srv.url}/v1/runtimes", headers=auth).json()["runtimes"]
    assert [(r["runtime_id"], r["health"]) for r in runtimes] == [(srv.runtime_id, "healthy")]
    assert runtimes[0]["endpoint"] == srv.url.replace("http://", "ws://")
    assert httpx.get(f"{srv.url}/v1/runtimes").status_code == 401  # the CP API stays guarded
    pipelines = httpx.get(f"{srv.url}/v1/pipelines", headers=auth).json()
    assert "voice-assistant" in str(pipelines)
    metrics = httpx.get(f"{srv.url}/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "rspp_runtime_ready 1.0" in metrics.text and "rspp_sessions_live 0.0" in metrics.text
    code, out, err = srv.terminate()
    assert code == 0, err
    assert "draining" in out and "stopped" in out
    assert asyncio.run(_runtimes(db)) == []  # deregistered on exit


def test_serve_refuses_to_start_without_its_control_plane(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    down = f"http://127.0.0.1:{free_port()}"
    res = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve", "--port", "0",
         "--control-plane", down, "--api-key", "k"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "error: control plane: unavailable" in res.stderr and "unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    nokey = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve",
         "--control-plane", down], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False)
    assert nokey.returncode == 2 and "--api-key" in nokey.stderr


def test_talk_to_embedded_serve_gets_transcript_reply_and_audio(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path
) -> None:
    """The main job live: a spoken question over WebSocket through the CP-governed runtime."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    # served sessions enforce wall-clock budgets: patient ones, the machine may be busy
    spec = tmp_path / "voice.yaml"
    spec.write_text(VOICE.read_text().replace(
        "\nproviders:", "\nbudgets: {turn_ms: 60000, provider_timeout_ms: 20000}\n\nproviders:"))
    srv = serve_process(str(spec), "--db", db, "--api-key", KEY, "--timeline-dir",
                        str(tmp_path / "timelines")).wait_ready()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    reply = tmp_path / "reply.wav"
    talk = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "talk", "--server", srv.url,
         "--tenant", "acme", "--input", str(spoken["question"]), "--output", str(reply)],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert talk.returncode == 0, talk.stdout + talk.stderr
    assert "you: what is the weather" in talk.stdout
    assert "assistant: I cannot check the weather offline" in talk.stdout
    assert reply.stat().st_size > 16000  # about a second of 16 kHz PCM16 or more
    sessions = list((tmp_path / "timelines").glob("*.jsonl"))
    assert len(sessions) == 1
    lines = sessions[0].read_text().splitlines()
    plans = [json.loads(x)["record"] for x in lines if '"resolved_turn_plan"' in x]
    assert plans and all(p["authority_epoch"] == 1 for p in plans)
    # the plan's snapshots came from the control plane (route-pinned version), not a local bundle
    assert all(":pinned:" in p["snapshot_provenance"]["version_resolution_snapshot"]
               for p in plans)
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'rspp_turns_total{outcome="commit",pipeline_version="voice-assistant@1.0.0"}' in metrics
    code, _, err = srv.terminate()
    assert code == 0, err
