"""The offline LocalResponderLLM stand-in (deterministic, seeded, streaming; F-063)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rspp.providers import ChatMessage, LLMRequest, Outcome
from rspp.providers.offline import INTENTS, LocalResponderLLM, detect_intent, respond
from rspp.testing import load_corpus

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 5, 14, 7, tzinfo=UTC)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is two plus three?", "two plus three is five."),
        ("what is 7 times 6", "seven times six is forty two."),
        ("what is ten minus twelve", "ten minus twelve is minus two."),
        ("what is eight divided by two", "eight divided by two is four."),
        ("Hello there", "Hello! How can I help you today?"),
        ("what is your name", "My name is Rusty, a local stand-in voice assistant."),
    ],
)
def test_answers_simple_questions(question: str, expected: str) -> None:
    assert respond(question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("what's two plus three", "two plus three is five."),
        ("how much is twenty one times three", "twenty one times three is sixty three."),
        ("what is a hundred and five minus six", "one hundred and five minus six is ninety nine."),
        ("what is seven divided by two", "seven divided by two is three point five."),
        ("what is four multiplied by six", "four multiplied by six is twenty four."),
        ("what is nine divided by zero", "Dividing by zero is not defined."),
        ("what time is it", "It is 2:07 PM."),
        ("tell me the time please", "It is 2:07 PM."),
        ("what is the date today", "Today is Thursday, 5 March 2026."),
        ("what day is it", "Today is Thursday, 5 March 2026."),
        ("who are you", "My name is Rusty, a local stand-in voice assistant."),
        ("will it rain tomorrow", "I cannot check the weather offline, but I hope it is nice "
                                  "where you are."),
        ("thank you goodbye", "Goodbye! Talk to you soon."),
        ("bye for now", "Goodbye! Talk to you soon."),
        ("good morning", "Hello! How can I help you today?"),
    ],
)
def test_answers_each_intent_from_spoken_phrasings(question: str, expected: str) -> None:
    assert respond(question, now=NOW) == expected


def test_jokes_and_help_answer_and_times_is_arithmetic_not_time() -> None:
    joke = respond("tell me a joke", seed=3, turn=1)
    assert "?" in joke and joke == respond("do you know any jokes", seed=3, turn=1)
    assert "two plus three" in respond("what can you do")
    assert respond("what is three times four") == "three times four is twelve."
    assert detect_intent("set a timer for ten minutes") is None  # "timer" is not "time"
    assert respond("what time is it", now=datetime(2026, 1, 1, 0, 30)) == "It is 12:30 AM."


def test_every_corpus_sentence_gets_its_intent() -> None:
    corpus = load_corpus()
    assert {u.intent for u in corpus} - {"open"} <= set(INTENTS)
    for utt in corpus:
        expected = None if utt.intent == "open" else utt.intent
        assert detect_intent(utt.words) == expected, utt.text


async def test_the_llm_answers_time_from_its_injected_clock() -> None:
    llm = LocalResponderLLM(token_delay_ms=0, now=lambda: NOW)
    request = LLMRequest(messages=(ChatMessage("user", "what time is it now"),))
    assert "".join([d async for d in llm.stream(request)]) == "It is 2:07 PM."


def test_reflects_other_input_deterministically_per_seed() -> None:
    first = respond("I like green apples", seed=1, turn=1)
    assert "I like green apples" in first
    assert first == respond("I like green apples", seed=1, turn=1)
    variants = {respond("I like green apples", seed=s, turn=1) for s in range(20)}
    assert len(variants) == 2  # the seed picks among the phrasings


async def test_streams_word_deltas_and_cancels_promptly() -> None:
    llm = LocalResponderLLM(token_delay_ms=0)
    request = LLMRequest(messages=(ChatMessage("user", "what is two plus three"),))
    deltas = [d async for d in llm.stream(request)]
    assert len(deltas) == 5 and "".join(deltas) == "two plus three is five."

    inv = llm.new_invocation()
    long_request = LLMRequest(messages=(ChatMessage("user", "tell me about " + "cats " * 30),))
    got: list[str] = []
    async for delta in llm.stream(long_request, invocation=inv):
        got.append(delta)
        if len(got) == 2:
            inv.cancel_scope.cancel("barge_in")
    assert len(got) == 2
    assert inv.outcome is Outcome.CANCELLED and inv.cancel_scope.reason == "barge_in"


class _TurnToken:
    """A minimal turn-scope CancelToken (the runtime Protocol) for linking scopes."""

    def __init__(self) -> None:
        self.cancelled = False
        self.reason: str | None = None

    def raise_if_cancelled(self) -> None:  # pragma: no cover - protocol completeness
        pass


async def test_invocation_scope_is_linked_to_its_parent_turn_scope() -> None:
    llm = LocalResponderLLM(token_delay_ms=0)
    turn = _TurnToken()
    inv = llm.new_invocation(parent=turn)
    got: list[str] = []
    request = LLMRequest(messages=(ChatMessage("user", "tell me about " + "dogs " * 20),))
    async for delta in llm.stream(request, invocation=inv):
        got.append(delta)
        if len(got) == 3:
            turn.cancelled, turn.reason = True, "turn_cancelled"
    assert len(got) == 3 and inv.outcome is Outcome.CANCELLED
    assert inv.cancel_scope.reason == "turn_cancelled"
    other = llm.new_invocation()
    assert other.invocation_id != inv.invocation_id  # unique ids (F-160)


async def test_task_cancel_stops_the_stream_and_records_cancelled() -> None:
    import asyncio

    llm = LocalResponderLLM(token_delay_ms=20)
    inv = llm.new_invocation()
    request = LLMRequest(messages=(ChatMessage("user", "tell me about " + "birds " * 20),))
    got: list[str] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for delta in llm.stream(request, invocation=inv):
            got.append(delta)
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert inv.outcome is Outcome.CANCELLED and len(got) < 10
