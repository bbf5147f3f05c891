"""``rspp docs`` lists node parameters (built-in and custom) and the provider adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

NODE = '''
from rspp import Node, param

class Loud(Node):
    """Shouts."""
    inputs = ("text",)
    outputs = ("text",)
    port_types = {"text": "text"}
    parameters = (param("suffix", "str", "!", "appended to every sentence"),)
'''

SPEC = """name: d
version: 1.0.0
nodes:
  - {id: loud, type: "python:docs_nodes:Loud"}
edges:
  - {from: input.text, to: loud.text}
  - {from: loud.text, to: output.text}
"""


def test_docs_list_params_of_builtin_and_custom_nodes_and_adapters(
    app: typer.Typer, tmp_path: Path
) -> None:
    (tmp_path / "docs_nodes.py").write_text(NODE)
    (tmp_path / "spec.yaml").write_text(SPEC)
    out = tmp_path / "ref"
    result = CliRunner().invoke(app, ["docs", str(out), "--spec", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.stdout
    nodes = (out / "node-types.md").read_text()
    assert "| `engine` | str | `\"energy\"` | speech detector; one of `energy`, `webrtc`" in nodes
    assert "## `python:docs_nodes:Loud` (custom)" in nodes
    assert "| `suffix` | str | `\"!\"` | appended to every sentence |" in nodes
    providers = (out / "providers.md").read_text()
    assert "## `anthropic` (llm)" in providers
    assert "environment: `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`" in providers
    assert "options: `api_key` (secret reference (env://NAME or file://PATH)), `base_url` (str)"\
        ", `model` (str)" in providers
    # dynamic batching (F-051) is an option of the adapter whose protocol batches
    assert "`batching` (mapping {max_batch_size: 1..256, max_wait_ms: 0..60000} (F-051))" \
        in providers.split("## `openai-completions` (llm)")[1].split("## ")[0]
