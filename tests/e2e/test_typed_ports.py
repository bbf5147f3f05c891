"""Typed ports of a custom node are checked when a spec is validated (F-003).

A node class declares its input/output types (``port_types``); `rspp lint` accepts a
spec wiring it to compatible ports and rejects one wiring audio into its text input,
naming the edge; `rspp run` refuses the same spec before any audio flows.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rspp.transports import write_wav

pytestmark = pytest.mark.e2e

NODE = '''
from rspp import Event, Node


class Upper(Node):
    inputs = ("text",)
    outputs = ("text",)
    port_types = {"text": "text"}

    def process(self, event: Event, port: str) -> Event | None:
        return event.derive("text", str(event.payload).upper(), final=event.final)
'''
SPEC = """\
name: typed
version: 1.0.0
providers:
  stt: {primary: pocketsphinx}
nodes:
  - {id: stt, type: stt}
  - {id: upper, type: "python:typed_nodes:Upper"}
edges:
  - {from: input.audio, to: stt.audio}
  - {from: FROM, to: upper.text}
  - {from: upper.text, to: output.transcript}
"""


def rspp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def test_incompatible_edge_of_a_typed_custom_node_is_rejected_at_validation(
    tmp_path: Path,
) -> None:
    (tmp_path / "typed_nodes.py").write_text(NODE)
    good = tmp_path / "good.yaml"
    good.write_text(SPEC.replace("FROM", "stt.final"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("FROM", "input.audio"))
    ok = rspp(tmp_path, "lint", "--strict", str(good))
    assert ok.returncode == 0, ok.stdout + ok.stderr

    linted = rspp(tmp_path, "lint", str(bad))
    assert linted.returncode == 1
    problems = [line for line in linted.stdout.splitlines() if line.startswith(f"{bad}:10:")]
    assert len(problems) == 1 and "edges[1]" in problems[0], linted.stdout
    assert "incompatible edge" in problems[0], problems

    silence = tmp_path / "silence.wav"
    write_wav(silence, b"\0\0" * 1600, 16000)
    ran = rspp(tmp_path, "run", str(bad), "--input", str(silence))
    assert ran.returncode != 0
    assert "Traceback" not in ran.stderr
    line = ran.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{bad}:10:") and "incompatible edge" in line, ran.stderr
