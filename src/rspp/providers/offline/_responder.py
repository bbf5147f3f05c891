"""LocalResponderLLM: a deterministic offline stand-in for a real language model.

It is NOT a language model. It answers a few simple question shapes
(greetings, "what is your name", time-free arithmetic such as "what is two
plus three") and otherwise reflects the user's words back. Output is a pure
function of the conversation and the seed, streamed word by word so the rest
of the pipeline sees real token streaming.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator

from rspp.providers._base import LLMProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._types import Capabilities, LLMRequest, ProviderKind

__all__ = ["LocalResponderLLM", "respond"]

_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}  # fmt: skip
_WORDS = {v: k for k, v in _NUMBERS.items()}
_OPS = {
    "plus": "+", "add": "+", "and": "+", "minus": "-", "less": "-",
    "times": "*", "multiplied": "*", "x": "*", "divided": "/", "over": "/",
    "+": "+", "-": "-", "*": "*", "/": "/",
}  # fmt: skip
_GREETINGS = ("hello", "hi", "hey", "good morning", "good evening", "good afternoon")
_REFLECT = (
    "You said: {text}. I am a local stand-in responder, so I can only repeat that back.",
    "I heard: {text}. This offline stand-in does not understand more than that.",
)


def _number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _NUMBERS.get(token)


def _say_number(value: float) -> str:
    if value != int(value):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    n = int(value)
    if n < 0:
        return "minus " + _say_number(-n)
    if n in _WORDS:
        return _WORDS[n]
    if n < 100:
        return f"{_WORDS[n - n % 10]} {_WORDS[n % 10]}"
    return str(n)


def _arithmetic(words: list[str]) -> str | None:
    for i in range(1, len(words) - 1):
        op = _OPS.get(words[i])
        if op is None:
            continue
        left = _number(words[i - 1])
        j = i + 1
        if words[j] in ("by", "to") and j + 1 < len(words):
            j += 1
        right = _number(words[j])
        if left is None or right is None:
            continue
        if op == "+":
            result: float = left + right
        elif op == "-":
            result = left - right
        elif op == "*":
            result = left * right
        elif right == 0:
            return "Dividing by zero is not defined."
        else:
            result = left / right
        op_words = " ".join(words[i:j])
        return f"{_say_number(left)} {op_words} {_say_number(right)} is {_say_number(result)}."
    return None


def respond(text: str, *, seed: int = 0, turn: int = 0, name: str = "Rusty") -> str:
    """The full deterministic reply for a user utterance."""
    clean = re.sub(r"[^a-z0-9+\-*/ ]+", " ", text.lower()).split()
    joined = " ".join(clean)
    if not clean:
        return "I did not catch that. Could you say it again?"
    answer = _arithmetic(clean)
    if answer is not None:
        return answer
    if "your name" in joined or "who are you" in joined:
        return f"My name is {name}, a local stand-in voice assistant."
    if any(joined.startswith(g) or f" {g} " in f" {joined} " for g in _GREETINGS):
        return "Hello! How can I help you today?"
    if "weather" in joined:
        return "I cannot check the weather offline, but I hope it is nice where you are."
    rng = random.Random(seed * 1_000_003 + turn)
    return rng.choice(_REFLECT).format(text=" ".join(text.split()).rstrip(".?!"))


class LocalResponderLLM(LLMProvider):
    """Offline, deterministic, seeded stand-in for an LLM (clearly not a real model)."""

    capabilities = Capabilities(kind=ProviderKind.LLM, streaming=True, offline=True)

    def __init__(
        self,
        provider_id: str = "local-responder",
        *,
        seed: int = 0,
        token_delay_ms: float = 5.0,
        assistant_name: str = "Rusty",
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        self.seed = seed
        self.token_delay_ms = token_delay_ms
        self.assistant_name = assistant_name

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        turn = sum(1 for m in request.messages if m.role == "user")
        seed = self.seed if request.seed is None else request.seed
        reply = respond(request.last_user_text, seed=seed, turn=turn, name=self.assistant_name)
        words = reply.split(" ")
        for index, word in enumerate(words[: max(1, request.max_tokens)]):
            if self.token_delay_ms > 0:
                await self.clock.sleep(self.token_delay_ms / 1000)
            yield word if index == 0 else " " + word
