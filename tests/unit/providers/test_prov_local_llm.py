"""The offline LocalResponderLLM stand-in (deterministic, seeded, streaming; F-063)."""

from __future__ import annotations

import pytest

from rspp.providers import ChatMessage, LLMRequest, Outcome
from rspp.providers.offline import LocalResponderLLM, respond

pytestmark = pytest.mark.unit


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
