"""Build the offline STT's domain language model (ARPA trigram) at start-up.

The text is the assistant's intents plus a general fallback (``_domain.py``)
and any extra phrases a spec adds. pocketsphinx's own ARPA builder
(``pocketsphinx.lm.ArpaBoLM``, back-off with a fixed discount) writes it to a
per-process cache directory keyed by the text's hash, so one model is built
once per process and configuration. Every word must be in the pocketsphinx
dictionary (shipped in the wheel); an unknown word in a spec phrase is an
error naming it. Next to the model goes a dictionary of just its words: loading
the full 134k-word dictionary takes seconds (tens on a busy machine), this one
milliseconds, and the search only ever uses the model's words.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers.offline._domain import domain_sentences

__all__ = ["DomainModel", "build_domain_lm", "dictionary_words", "normalise_phrase"]

_LOCK = threading.Lock()
_WORDS: frozenset[str] | None = None
_CACHE = Path(tempfile.gettempdir()) / f"rspp-lm-{os.getuid()}"


def model_dir() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us"


def dictionary_words() -> frozenset[str]:
    """Every word of the bundled pocketsphinx dictionary (loaded once)."""
    global _WORDS
    with _LOCK:
        if _WORDS is None:
            words = set()
            with open(model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
                for line in f:
                    head = line.split(" ", 1)[0]
                    words.add(head.split("(", 1)[0])
            _WORDS = frozenset(words)
        return _WORDS


def normalise_phrase(text: str) -> str:
    """Lower case, letters/digits/apostrophes only, single spaces."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def _check_phrases(phrases: Iterable[str], known: frozenset[str]) -> list[str]:
    out = []
    for i, phrase in enumerate(phrases):
        clean = normalise_phrase(phrase)
        unknown = [w for w in clean.split() if w not in known]
        if unknown:
            raise ProviderCallError(
                f"phrases[{i}]={phrase!r}: {unknown[0]!r} is not in the pocketsphinx dictionary; "
                "spell numbers as words and use common English words",
                outcome=Outcome.BAD_REQUEST,
                provider="pocketsphinx",
                code="phrases",
            )
        if clean:
            out.append(clean)
    return out


@dataclass(frozen=True, slots=True)
class DomainModel:
    lm: Path  # ARPA trigram model
    dictionary: Path  # pronunciations of the model's words only


def _write_dictionary(words: set[str], path: Path) -> None:
    lines = []
    with open(model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            if line.split(" ", 1)[0].split("(", 1)[0] in words:
                lines.append(line)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)


def build_domain_lm(phrases: Sequence[str] = (), *, phrase_weight: int = 4) -> DomainModel:
    """The domain model plus ``phrases`` and its dictionary (built once, then cached)."""
    known = dictionary_words()
    extra = _check_phrases(phrases, known)
    text = "\n".join(
        [s for s in domain_sentences() if all(w in known for w in s.split())]
        + extra * phrase_weight
    )
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    model = DomainModel(_CACHE / f"domain-{digest}.arpa", _CACHE / f"domain-{digest}.dict")
    with _LOCK:
        if model.lm.exists() and model.dictionary.exists():
            return model
        from pocketsphinx.lm import ArpaBoLM

        _CACHE.mkdir(parents=True, exist_ok=True)
        lm = ArpaBoLM(text=text, add_start=True, discount_mass=0.5)
        lm.compute()
        tmp = model.lm.with_name(f"{model.lm.name}.{os.getpid()}.tmp")
        lm.write_file(str(tmp))
        _write_dictionary(set(text.split()), model.dictionary)
        tmp.replace(model.lm)  # atomic: concurrent processes never read half a file
    return model
