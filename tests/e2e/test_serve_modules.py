"""``rspp serve`` runs a spec that uses a subgraph module and a custom Python node (F-019, F-011).

The embedded server publishes the module it finds beside the spec, then the spec (which
pins the module's hash); the runtime fetches the pinned module text back from the control
plane, compiles against exactly that text, imports the custom node and answers by voice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "serve-modules-admin-key"
REPO = Path(__file__).resolve().parents[2]
SHOWCASE = REPO / "pipelines" / "examples" / "showcase.yaml"
MODULE = REPO / "pipelines" / "subgraphs" / "transcribe@1.0.0.yaml"


def test_served_showcase_resolves_its_module_and_runs_its_custom_node(
    serve_process: Callable[..., ServeProcess], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    # the spec and its module side by side in a fresh folder, with budgets a busy machine meets
    (tmp_path / "subgraphs").mkdir()
    shutil.copy(MODULE, tmp_path / "subgraphs" / MODULE.name)
    spec = tmp_path / "showcase.yaml"
    text = SHOWCASE.read_text().replace("turn_ms: 2000", "turn_ms: 60000")
    spec.write_text(text.replace("timeout_ms: 900", "timeout_ms: 20000"))
    db = f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}"
    srv = serve_process(str(spec), "--db", db, "--api-key", KEY).wait_ready()
    assert any("pipeline showcase@1.0.0" in line for line in srv.banner), srv.banner
    auth = {"Authorization": f"Bearer {KEY}"}
    module = httpx.get(f"{srv.url}/v1/modules/transcribe/versions/1.0.0", headers=auth)
    assert module.status_code == 200, module.text
    assert module.json()["content_text"] == MODULE.read_text()
    pinned = httpx.get(f"{srv.url}/v1/pipelines/showcase", headers=auth).json()["modules"]
    assert pinned == {"transcribe@1.0.0": module.json()["content_hash"]}
    assert httpx.get(f"{srv.url}/v1/modules/transcribe/versions/1.0.0").status_code == 401
    missing = httpx.get(f"{srv.url}/v1/modules/transcribe/versions/9.9.9", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"

    question = rspp_cli.say("what time is it", tmp_path / "q.wav")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    talk = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "talk", "--server", srv.url,
         "--pipeline", "showcase", "--input", str(question), "--output",
         str(tmp_path / "reply.wav")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert talk.returncode == 0, talk.stdout + talk.stderr
    assert "you: what time is it" in talk.stdout
    # one reply per turn (protocol 1.1: `rspp talk` prints the final text): the custom Filler
    # node spoke first, then the LLM's answer
    replies = [line for line in talk.stdout.splitlines() if line.startswith("assistant: ")]
    assert len(replies) == 1, talk.stdout
    assert replies[0].startswith("assistant: One moment.") and "It is " in replies[0], replies
    code, _, err = srv.terminate()
    assert code == 0, err
