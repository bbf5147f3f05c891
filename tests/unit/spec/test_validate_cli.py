"""``rspp validate`` / ``rspp lint`` over PipelineSpecs and config files (F-126)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

BAD_POLICY = """\
kind: policy
scope: acme
body:
  providers: {stt: pocketsphinx}
  rules:
    - match: {lang: en}
      providers: {llm: local}
"""
BAD_ADMISSION = """\
kind: admission
body:
  sessions_per_minute: 10
  max_concurrent_sessions: 0
"""
BAD_ENVELOPE = """\
kind: polcy
body: {}
extra: 1
"""
GOOD_POLICY = """\
kind: policy
scope: "*"
body:
  providers: {stt: pocketsphinx, llm: local, tts: espeak}
  fallback_chains: {llm: [local-responder]}
  rules:
    - match: {language: de}
      providers: {tts: espeak}
  turn_budget_ms: 8000
"""
GOOD_ADMISSION = "kind: admission\nscope: acme\nbody: {max_concurrent_sessions: 5}\n"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_validate_names_file_line_and_field_of_every_bad_file(
    app: typer.Typer, tmp_path: Path, fixtures_dir: Path
) -> None:
    spec = fixtures_dir / "broken.yaml"
    policy = _write(tmp_path, "policy.yaml", BAD_POLICY)
    admission = _write(tmp_path, "admission.yaml", BAD_ADMISSION)
    envelope = _write(tmp_path, "envelope.yaml", BAD_ENVELOPE)
    result = CliRunner().invoke(app, ["validate", str(spec), str(policy), str(admission),
                                      str(envelope)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    # one line per problem, each FILE:LINE:COL: field: message; hint
    assert not any(line.startswith(" ") for line in lines)
    assert any(line.startswith(f"{spec}:16:23: edges[1].to: dangling edge") for line in lines)
    assert (f"{policy}:6:15: body.rules[0].match.lang: Object contains unknown field `lang`; "
            "remove the field or check its spelling; config documents allow no extra keys"
            ) in lines
    assert any(line.startswith(f"{admission}:4:3: body.max_concurrent_sessions: Expected `int` "
                               ">= 1") for line in lines)
    assert any(line.startswith(f"{envelope}:1:1: kind: 'polcy' is not a config kind; use one "
                               "of: policy, provider_config, admission") for line in lines)
    assert any(line.startswith(f"{envelope}:3:1: extra: unknown field 'extra'") for line in lines)
    assert f"{policy}: 1 error(s), 0 warning(s)" in result.stderr


def test_valid_files_pass_relaxed_and_strict_and_bad_references_fail_only_strict(
    app: typer.Typer, tmp_path: Path, repo_root: Path
) -> None:
    spec = repo_root / "pipelines" / "examples" / "voice_assistant.yaml"
    files = [str(spec), str(_write(tmp_path, "p.yaml", GOOD_POLICY)),
             str(_write(tmp_path, "a.json", '{"kind": "admission", "body": {}}')),
             str(_write(tmp_path, "a.yaml", GOOD_ADMISSION))]
    for mode in ([], ["--strict"]):
        result = CliRunner().invoke(app, ["validate", *mode, *files])
        assert result.exit_code == 0, result.stdout
        assert result.stdout == ""
    # an adapter no runtime has and a misspelt modality: accepted by the control plane,
    # so warnings in relaxed mode and errors under --strict
    typo = _write(tmp_path, "typo.yaml", GOOD_POLICY.replace("tts: espeak}\n  fallback",
                                                             "tts: espek}\n  fallback")
                  .replace("fallback_chains: {llm:", "fallback_chains: {lmm:"))
    relaxed = CliRunner().invoke(app, ["validate", str(typo)])
    assert relaxed.exit_code == 0
    assert (f"{typo}:4:46: warning: body.providers.tts: no tts adapter is named 'espek'; use "
            "one of: elevenlabs, espeak, openai-tts") in relaxed.stdout.splitlines()
    assert f"{typo}:5:21: warning: body.fallback_chains.lmm: 'lmm' is not a modality" in (
        relaxed.stdout)
    strict = CliRunner().invoke(app, ["validate", "--strict", str(typo)])
    assert strict.exit_code == 1
    assert f"{typo}:4:46: body.providers.tts: no tts adapter" in strict.stdout


def test_lint_checks_config_files_too(app: typer.Typer, tmp_path: Path) -> None:
    policy = _write(tmp_path, "policy.yaml", BAD_POLICY)
    result = CliRunner().invoke(app, ["lint", str(policy)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == [
        f"{policy}:6:15: body.rules[0].match.lang: Object contains unknown field `lang`",
        "    hint: remove the field or check its spelling; config documents allow no extra keys",
    ]


def test_a_negative_provider_price_is_refused_naming_the_field(
    app: typer.Typer, tmp_path: Path, repo_root: Path
) -> None:
    """F-075: `providers.<modality>.config.price` feeds the session's cost estimate."""
    text = (repo_root / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    assert "llm: {primary: local}" in text
    spec = _write(tmp_path, "priced.yaml", text.replace(
        "llm: {primary: local}", "llm: {primary: local, config: {price: -1}}"))
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    assert "providers.llm.config.price: price=-1: must be a number >= 0 (USD per 1000 LLM " \
        "tokens for llm" in result.stdout, result.stdout
    fine = _write(tmp_path, "fine.yaml", text.replace(
        "llm: {primary: local}", "llm: {primary: local, config: {price: 0.25}}"))
    assert CliRunner().invoke(app, ["validate", "--strict", str(fine)]).exit_code == 0
