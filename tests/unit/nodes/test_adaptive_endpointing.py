"""Adaptive endpointing (F-017): the turn ends early when the transcript is a complete
request, and waits the full silence when the sentence is unfinished (mid-sentence pause)."""

from __future__ import annotations

import pytest

from rspp.nodes import AdaptiveEndpointer, make_endpointer, transcript_complete

pytestmark = pytest.mark.unit


def _drive(ep: AdaptiveEndpointer, heard: list[str], pattern: list[tuple[bool, int]],
           ) -> list[tuple[str, int]]:
    """Frames of 20 ms; ``heard[0]`` is the transcript the STT reports at each moment."""
    ep.is_complete = lambda: transcript_complete(heard[0])
    out, t = [], 0
    for speech, n in pattern:
        for _ in range(n):
            t += 20
            b = ep.update(speech, 20.0)
            if b is not None:
                out.append((b, t))
    return out


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("what time is it", True),
        ("what is two plus three", True),
        ("tell me a joke", True),
        ("goodbye", True),
        ("who are you", True),
        ("tell me the time please", True),
        ("what is", False),  # "what is ... four times six"
        ("tell me", False),
        ("tell me a", False),
        ("what is two plus", False),
        ("remind me to call my mother", False),  # not a request the assistant knows
        ("", False),
    ],
)
def test_a_transcript_is_complete_when_it_is_a_known_request_not_ending_in_a_link_word(
    text: str, complete: bool
) -> None:
    assert transcript_complete(text) is complete


def test_complete_transcript_ends_the_turn_after_the_short_silence() -> None:
    ep = make_endpointer({"endpointing": "adaptive", "silence_ms": 600,
                          "complete_silence_ms": 240})
    assert isinstance(ep, AdaptiveEndpointer)
    got = _drive(ep, ["what time is it"], [(False, 5), (True, 50), (False, 40)])
    assert got == [("start", 160), ("end", 1100 + 240)]  # start needs 60 ms of voice
    assert ep.ended_early and ep.early_ends == 1


def test_a_pause_inside_an_unfinished_sentence_does_not_split_the_turn() -> None:
    ep = AdaptiveEndpointer(silence_ms=600, complete_silence_ms=240)
    heard = ["what is"]
    pattern = [(True, 20), (False, 20)]  # "what is" then a 400 ms pause
    got = _drive(ep, heard, pattern)
    assert got == [("start", 60)]  # still in the same utterance
    heard[0] = "what is four times six"
    got = _drive(ep, heard, [(True, 40), (False, 40)])
    assert got == [("end", 800 + 240)]
    assert ep.early_ends == 1


def test_without_a_complete_transcript_it_is_plain_silence_endpointing() -> None:
    ep = AdaptiveEndpointer(silence_ms=600, complete_silence_ms=240)
    got = _drive(ep, ["remind me to call my mother"], [(True, 50), (False, 40)])
    assert got == [("start", 60), ("end", 1000 + 600)]
    assert not ep.ended_early
    with pytest.raises(ValueError, match="complete_silence_ms=700"):
        AdaptiveEndpointer(silence_ms=600, complete_silence_ms=700)
