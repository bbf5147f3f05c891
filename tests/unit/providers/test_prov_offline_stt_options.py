"""Offline STT configuration (provider options, domain language model) and the WER corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.nodes import build_provider
from rspp.providers import Outcome, PolicyError, ProviderCallError
from rspp.providers.offline import PocketsphinxSTT
from rspp.providers.offline._lm import build_domain_lm
from rspp.testing import load_corpus, word_errors

pytestmark = pytest.mark.unit


def test_word_errors_counts_substitutions_insertions_and_deletions() -> None:
    assert word_errors("what time is it", "What time is it?") == (0, 4)
    assert word_errors("what time is it", "what type is it") == (1, 4)
    assert word_errors("tell me a joke", "tell me joke please") == (2, 4)
    assert word_errors("hello", "") == (1, 1)


def test_the_corpus_covers_every_intent_with_pauses_inside_sentences(tmp_path: Path) -> None:
    corpus = load_corpus()
    assert len(corpus) >= 30
    intents = {u.intent for u in corpus}
    assert {"time", "date", "name", "arithmetic", "weather", "joke", "help", "goodbye",
            "open"} <= intents
    paused = [u for u in corpus if u.has_pause]
    assert len(paused) >= 5 and all("|" not in u.words for u in paused)
    bad = tmp_path / "c.tsv"
    bad.write_text("time what time is it\n")
    with pytest.raises(ValueError, match=r"c\.tsv:1: expected INTENT<TAB>TEXT"):
        load_corpus(bad)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"language_model": "huge"}, "language_model="),
        ({"phrases": "turn on the radio"}, "phrases:"),
        ({"language_model": "general", "phrases": ["hi"]}, "phrases:"),
        ({"noise_floor_dbfs": 3.0}, "noise_floor_dbfs=3.0"),
        ({"lm_weight": 100.0}, "lm_weight=100.0"),
    ],
)
def test_bad_options_are_refused_naming_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ProviderCallError) as err:
        PocketsphinxSTT(**options)  # type: ignore[arg-type]
    assert err.value.outcome is Outcome.BAD_REQUEST and field in str(err.value)


def test_the_spec_factory_passes_options_and_refuses_unknown_ones() -> None:
    stt = build_provider("pocketsphinx", {"language_model": "general", "lm_weight": 7.0,
                                          "second_pass": False}, modality="stt")
    assert isinstance(stt, PocketsphinxSTT)
    assert (stt.language_model, stt.lm_weight, stt.noise_floor_dbfs, stt.second_pass) == (
        "general", 7.0, -50.0, False)
    with pytest.raises(PolicyError, match=r"unknown option\(s\) \['beam'\]"):
        build_provider("pocketsphinx", {"beam": 1e-40}, modality="stt")


def test_domain_model_takes_spec_phrases_and_refuses_unknown_words() -> None:
    base = build_domain_lm()
    extended = build_domain_lm(["switch on the coffee machine"])
    assert base != extended and extended.lm.exists()
    assert "coffee machine" in extended.lm.read_text()
    words = {line.split()[0] for line in extended.dictionary.read_text().splitlines()}
    assert {"coffee", "machine", "time", "joke"} <= words and "zebra" not in words
    assert build_domain_lm(["switch on the coffee machine"]) == extended  # cached
    with pytest.raises(ProviderCallError, match=r"phrases\[0\].*'zxqv'"):
        build_domain_lm(["open zxqv now"])
