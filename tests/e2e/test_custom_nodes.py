"""Custom nodes written in Python, used from specs: ``python:MODULE:CLASS`` and the ``rspp.nodes``
entry-point group, loaded by ``rspp lint`` and ``rspp run`` (F-011)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

SHOUT = textwrap.dedent('''
    from rspp import Event, Node, param

    class Shout(Node):
        """Upper-cases reply sentences."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}
        scope = "turn"
        parameters = (param("suffix", "str", "!", "appended to every sentence"),)

        def process(self, event: Event, port: str) -> Event | None:
            if event.kind != "text" or not str(event.payload or "").strip():
                return event
            loud = str(event.payload).upper().rstrip(".!?") + self.params["suffix"]
            return event.derive("text", loud, final=event.final, attrs=event.attrs)
''')

#: Deepgram (fake) STT keeps the test light; the custom node sits between segmenter and TTS.
SPEC = voice_assistant_spec("entry-point-nodes", stt="{primary: deepgram}",
                            before_tts='{id: loud, type: %s, params: {%s: " (loud)"}}')


def _rspp(*args: str, cwd: Path, env: dict[str, str] | None = None,
          pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full.update(env or {})
    if pythonpath is not None:
        full["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pythonpath), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=cwd,
                          env=full)


def test_showcase_runs_end_to_end_with_its_custom_node(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    spec = REPO / "pipelines" / "examples" / "showcase.yaml"
    assert "python:examples.showcase_nodes:Filler" in spec.read_text()
    lint = _rspp("lint", "--strict", str(spec), cwd=REPO)
    assert lint.returncode == 0, lint.stdout
    res = _rspp("run", str(spec), "--input", str(spoken["question"]), "--json", cwd=REPO)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (turn,) = out["turns"]
    assert turn["terminal"] == "commit", (out, res.stderr)
    # the custom node speaks first, the model's answer follows through merge and select
    assert turn["reply"].startswith("One moment. "), turn
    assert len(turn["reply"]) > len("One moment. ") + 10 and out["output_seconds"] > 1.0


def _install_entry_point(site: Path, version: str) -> None:
    """A separately installed distribution publishing ``acme.loud@VERSION`` in ``rspp.nodes``;
    each version tags its sentences with its version."""
    module = f"acme_loud_{version.replace('.', '_')}"
    (site / f"{module}.py").write_text(
        SHOUT.replace('self.params["suffix"]', f'self.params["suffix"] + " v{version}"')
        + f"\nShout.version = {version!r}\n")
    dist = site / f"{module}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[rspp.nodes]\nacme.loud@{version} = {module}:Shout\n")


def test_entry_point_node_versions_are_linted_and_run_pinned(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    """F-011/F-121: a node packaged on its own, two versions installed, the spec pins one."""
    site = tmp_path / "site"
    site.mkdir()
    for version in ("1.0.0", "2.0.0"):
        _install_entry_point(site, version)
    replies = {}
    with FakeProviderServers() as fakes:
        for ref in ("acme.loud@1.0.0", "acme.loud@2.0.0"):
            spec = tmp_path / f"{ref}.yaml"
            spec.write_text(SPEC % (ref, "suffix"))
            lint = _rspp("lint", "--strict", str(spec), cwd=tmp_path, pythonpath=site)
            assert lint.returncode == 0, lint.stdout
            res = _rspp("run", str(spec), "--input", str(spoken["question"]), "--json",
                        cwd=tmp_path, env=fakes.env, pythonpath=site)
            assert res.returncode == 0, res.stderr
            (turn,) = json.loads(res.stdout)["turns"]
            assert turn["terminal"] == "commit", turn
            replies[ref] = turn["reply"]
    for ref, reply in replies.items():
        assert reply.startswith("I CANNOT CHECK THE WEATHER OFFLINE"), reply
        assert reply.endswith(f" (loud) v{ref.partition('@')[2]}"), reply


def test_param_typo_of_a_custom_node_fails_strict_lint(tmp_path: Path) -> None:
    (tmp_path / "my_nodes.py").write_text(SHOUT)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % ("python:my_nodes:Shout", "sufix"))
    loose = _rspp("lint", str(spec), cwd=REPO)
    assert loose.returncode == 0 and "warning: nodes[4].params.sufix" in loose.stdout
    strict = _rspp("lint", "--strict", str(spec), cwd=REPO)
    assert strict.returncode == 1
    assert (f"{spec}:12:54: nodes[4].params.sufix: unknown param 'sufix' for node type "
            "'python:my_nodes:Shout'") in strict.stdout
    assert "hint: did you mean 'suffix'? known params: suffix" in strict.stdout


def test_unimportable_node_is_one_lint_error_and_one_run_error(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % ("python:no_such_module:Loud", "suffix"))
    lint = _rspp("lint", str(spec), cwd=tmp_path)
    assert lint.returncode == 1
    assert (f"{spec}:12:16: nodes[4].type: 'python:no_such_module:Loud': cannot import module "
            "'no_such_module'") in lint.stdout
    run = _rspp("run", str(spec), "--input", str(spoken["question"]), cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "cannot import module 'no_such_module'" in run.stderr
