"""Every example spec naming real providers runs through ``rspp run`` against the local fake
servers (real wire protocols on loopback), and a missing API key stops it at session start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "pipelines" / "examples"
#: example -> (the fakes it talks to, the key variables it needs)
REMOTE = {
    "cloud_openai.yaml": (("deepgram", "openai"), ("DEEPGRAM_API_KEY", "OPENAI_API_KEY")),
    "cloud_anthropic_elevenlabs.yaml": (
        ("deepgram", "anthropic", "elevenlabs"),
        ("DEEPGRAM_API_KEY", "ANTHROPIC_API_KEY", "ELEVENLABS_API_KEY"),
    ),
    "anthropic_offline_speech.yaml": (("anthropic",), ("ANTHROPIC_API_KEY",)),
    "local_openai_compatible.yaml": (("openai",), ()),
    "batched_completions.yaml": (("openai",), ("OPENAI_API_KEY",)),
}
#: offline examples, run by the tests named here
OFFLINE = {
    "voice_assistant.yaml": "e2e/test_run_offline.py",
    "simple_mode.yaml": "e2e/test_run_simple_mode.py",
    "showcase.yaml": "e2e/test_custom_nodes.py",
    "phone_assistant.yaml": "e2e/test_serve_phone.py",
}


def _rspp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.endswith(("_API_KEY", "_BASE_URL"))}
    return subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", *args],
        capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        env={**clean, **env},
    )


def test_every_example_spec_is_run_by_a_test() -> None:
    found = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert found == set(REMOTE) | set(OFFLINE)
    for test in OFFLINE.values():
        assert (REPO / "tests" / test).exists()


@pytest.mark.parametrize("example", sorted(REMOTE))
def test_example_runs_against_the_fake_providers(
    example: str, spoken: dict[str, Path], tmp_path: Path
) -> None:
    used, _keys = REMOTE[example]
    spec = EXAMPLES / example
    key = None if example.startswith("local_") else "test-key"
    with FakeProviderServers(api_key=key) as fakes:
        if example.startswith("local_"):  # its base_url names Ollama's port: aim it at the fake
            text = spec.read_text().replace("http://127.0.0.1:11434/v1",
                                            fakes.env["OPENAI_BASE_URL"])
            spec = tmp_path / example
            spec.write_text(text)
        res = _rspp("run", str(spec), "--input", str(spoken["question"]), "--json",
                    "--output", str(tmp_path / "reply.wav"), env=fakes.env)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        (turn,) = out["turns"]
        assert turn["terminal"] == "commit", (out, res.stderr)
        assert turn["reply"].startswith("You asked: what is the weather"), turn
        assert out["output_seconds"] > 0.5 and out["dead_letters"] == []
        seen = {name: getattr(fakes, name).requests for name in
                ("openai", "anthropic", "deepgram", "elevenlabs")}
    for name, requests in seen.items():
        assert bool(requests) == (name in used), (name, requests)
    if "openai" in used:
        chat = [r for r in seen["openai"]
                if r.path in ("/v1/chat/completions", "/v1/completions")]
        assert chat and isinstance(chat[0].body, dict) and chat[0].body["stream"] is True
        auth = chat[0].headers.get("authorization")
        assert auth == (None if key is None else f"Bearer {key}")
    if example == "batched_completions.yaml":  # batching on, one session: a batch of one
        assert fakes.openai.completion_batches == [1]
        assert isinstance(chat[0].body, dict) and isinstance(chat[0].body["prompt"], list)
    if "anthropic" in used:
        assert seen["anthropic"][0].headers["x-api-key"] == "test-key"
    if "deepgram" in used:
        assert seen["deepgram"][0].path.startswith("/v1/listen?encoding=linear16")


@pytest.mark.parametrize("example", sorted(k for k, v in REMOTE.items() if v[1]))
def test_missing_api_key_fails_at_session_start_naming_the_variable(
    example: str, spoken: dict[str, Path]
) -> None:
    _used, keys = REMOTE[example]
    env = {k: "test-key" for k in keys[:-1]}  # every key but the last one
    res = _rspp("run", str(EXAMPLES / example), "--input", str(spoken["question"]), env=env)
    assert res.returncode == 2
    assert res.stdout == ""
    (line,) = res.stderr.strip().splitlines()
    assert f"{example}: providers." in line and f"{keys[-1]} is not set" in line
