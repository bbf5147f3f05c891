"""``rspp lint``, ``rspp spec resolve`` and ``rspp docs`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.unit


def test_lint_reports_problems_and_exits_1(app: typer.Typer, fixtures_dir: Path) -> None:
    path = fixtures_dir / "broken.yaml"
    result = CliRunner().invoke(app, ["lint", "--strict", str(path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"{path}:4:1: colour: unknown field 'colour' in PipelineSpec" in lines
    assert any(line.startswith(f"{path}:16:23: edges[1].to: dangling edge") for line in lines)
    assert any(line.startswith(f"{path}:17:") and "incompatible edge" in line for line in lines)
    assert any(line.startswith(f"{path}:20:5: edges[5]: cycle: a -> b -> a") for line in lines)
    hints = [line for line in lines if line.strip().startswith("hint: ")]
    errors = [line for line in lines if line.startswith(str(path))]
    assert len(hints) == len(errors) >= 4


def test_lint_unknown_key_warning_exit_0_without_strict(
    app: typer.Typer, tmp_path: Path, repo_root: Path
) -> None:
    text = (repo_root / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("profile: simple/v1", "profile: simple/v1\nextra: 1"))
    loose = CliRunner().invoke(app, ["lint", str(path)])
    assert loose.exit_code == 0 and f"{path}:6:1: warning: extra:" in loose.stdout
    strict = CliRunner().invoke(app, ["lint", "--strict", str(path)])
    assert strict.exit_code == 1 and f"{path}:6:1: extra:" in strict.stdout


def test_lint_missing_file(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["lint", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read file" in result.stdout


def test_spec_resolve_json_shows_sources_and_session(
    app: typer.Typer, repo_root: Path, tmp_path: Path
) -> None:
    layers = tmp_path / "layers.yaml"
    layers.write_text("tenants:\n  acme: {budgets.turn_ms: 1700}\n"
                      "sessions:\n  s-42: {providers.llm.primary: openai}\n")
    spec = repo_root / "pipelines" / "examples" / "showcase.yaml"
    result = CliRunner().invoke(app, [
        "spec", "resolve", str(spec), "--tenant", "acme", "--session", "s-42",
        "--layers", str(layers), "--json",
    ], env={"RSPP_SPEC__BUDGETS__NODE_MS": "650"})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    values = {v["path"]: (v["value"], v["source"]) for v in doc["values"]}
    assert values["budgets.turn_ms"] == (1700, "tenant")
    assert values["budgets.node_ms"] == (650, "environment")
    assert values["providers.llm.primary"] == ("openai", "session")
    assert values["budgets.cancel_grace_ms"] == (75, "execution_profile_default")
    assert doc["session_id"] == "s-42" and len(doc["graph_hash"]) == 64
    origins = {n["id"]: n["origin"] for n in doc["nodes"]}
    assert origins["asr.stt"].startswith("subgraph:asr@transcribe@1.0.0")
    assert doc["graph"]["fallbacks"][0]["fallback"] == "apology"


def test_spec_resolve_table_and_invalid_spec(
    app: typer.Typer, repo_root: Path, fixtures_dir: Path
) -> None:
    spec = repo_root / "pipelines" / "examples" / "voice_assistant.yaml"
    table = CliRunner().invoke(app, ["spec", "resolve", str(spec), "--session", "s1"])
    assert table.exit_code == 0
    assert "session_id s1" in table.stdout and "execution_profile_default" in table.stdout
    bad = CliRunner().invoke(app, ["spec", "resolve", str(fixtures_dir / "broken.yaml")])
    assert bad.exit_code == 2 and "dangling edge" in bad.stderr
    assert len(bad.stderr.splitlines()) == 1  # bad input is one line naming file and line
    assert bad.stderr.startswith(f"{fixtures_dir / 'broken.yaml'}:")


def test_docs_are_generated_from_types(app: typer.Typer, tmp_path: Path) -> None:
    from rspp.contracts import SCHEMA_VERSION, EdgeBufferPolicy

    result = CliRunner().invoke(app, ["docs", str(tmp_path / "ref")])
    assert result.exit_code == 0
    spec_md = (tmp_path / "ref" / "pipeline-spec.md").read_text()
    assert f"schema_version: {SCHEMA_VERSION}" in spec_md
    assert "| `from` |" in spec_md and "| `when` |" in spec_md  # field names incl. aliases
    assert "Examples: `confidence < 0.5`" in spec_md
    assert "## NodeSpec" in spec_md and "## SubgraphUse" in spec_md
    contracts_md = (tmp_path / "ref" / "contracts.md").read_text()
    assert f"schema_version: {SCHEMA_VERSION}" in contracts_md
    for field in EdgeBufferPolicy.__struct_fields__:  # generic introspection covers every field
        assert f"| `{field}` |" in contracts_md
    profile_md = (tmp_path / "ref" / "execution-profile.md").read_text()
    assert '"turn_budget_ms": 2000' in profile_md
    nodes_md = (tmp_path / "ref" / "node-types.md").read_text()
    assert "## `stt`" in nodes_md and "`partial` (text, streaming)" in nodes_md


def test_real_entry_point_lints_examples(repo_root: Path) -> None:
    examples = sorted(str(p) for p in (repo_root / "pipelines" / "examples").glob("*.yaml"))
    proc = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "lint", "--strict", *examples],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count(": ok") == len(examples)
