"""``rspp lint`` checks adapter names and options under ``providers:`` (strict and not)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

SPEC = """name: p
version: 1.0.0
template: voice_assistant
providers:
  stt: {primary: pocketsphinx}
  llm:
    primary: %s
    fallbacks: [%s]
    config: {%s}
  tts: {primary: espeak}
"""


def _lint(app: typer.Typer, tmp_path: Path, text: str, *strict: str) -> tuple[int, list[str]]:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["lint", *strict, str(path)])
    return result.exit_code, result.stdout.replace(str(path), "SPEC").splitlines()


@pytest.mark.parametrize("strict", [(), ("--strict",)])
def test_unknown_adapter_is_an_error_listing_the_known_ones(
    app: typer.Typer, tmp_path: Path, strict: tuple[str, ...]
) -> None:
    code, lines = _lint(app, tmp_path, SPEC % ("antropic", "local", ""), *strict)
    assert code == 1
    assert lines[0] == "SPEC:7:5: providers.llm.primary: unknown llm adapter 'antropic'"
    assert lines[1] == ("    hint: did you mean 'anthropic'? use one of: anthropic, local, "
                        "local-responder, openai, openai-completions")


def test_adapter_of_another_modality_and_bad_fallback(app: typer.Typer, tmp_path: Path) -> None:
    code, lines = _lint(app, tmp_path, SPEC % ("elevenlabs", "gpt", ""))
    assert code == 1
    assert "SPEC:7:5: providers.llm.primary: unknown llm adapter 'elevenlabs' ('elevenlabs' "\
        "is a tts adapter)" in lines
    assert "SPEC:8:17: providers.llm.fallbacks[0]: unknown llm adapter 'gpt'" in lines


def test_misspelt_option_names_the_key_and_the_valid_ones(
    app: typer.Typer, tmp_path: Path
) -> None:
    code, lines = _lint(app, tmp_path, SPEC % ("openai", "local", "modle: gpt-4o"))
    assert code == 1
    assert lines[0].startswith("SPEC:9:14: providers.llm.config.modle: unknown option(s) "
                               "['modle'] for llm adapter 'openai' (did you mean 'model'?)")
    assert lines[1] == "    hint: valid options of 'openai': api_key, base_url, model"


def test_every_adapter_name_is_accepted(app: typer.Typer, tmp_path: Path) -> None:
    for llm in ("openai", "anthropic", "local", "local-responder"):
        code, lines = _lint(app, tmp_path, SPEC % (llm, "local", "") , "--strict")
        assert code == 0, lines
    both = SPEC.replace("pocketsphinx", "deepgram").replace("espeak", "elevenlabs")
    assert _lint(app, tmp_path, both % ("openai", "anthropic", ""), "--strict")[0] == 0
    tts = SPEC.replace("espeak", "openai-tts")
    assert _lint(app, tmp_path, tts % ("openai", "anthropic", ""), "--strict")[0] == 0
