"""LocalResponderLLM: a deterministic offline stand-in for a real language model.

It is NOT a language model. It recognises a few intents in a transcript, with
matching tolerant of how people (and the offline STT) phrase them, and answers
them: time, date, its name, spoken arithmetic ("what's two plus three"),
weather (it cannot know), jokes, help, goodbye and greetings, and it remembers
the conversation: "what did I ask" answers with the user's previous message.
Anything else is reflected back. Output is a pure function of the conversation,
the seed and the injected ``now`` (time and date answers), streamed word by word
so the rest of the pipeline sees real token streaming.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from rspp.providers._base import LLMProvider
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._types import Capabilities, LLMRequest, ProviderKind
from rspp.providers.offline._arithmetic import answer_arithmetic

__all__ = ["INTENTS", "LocalResponderLLM", "detect_intent", "respond"]

_REFLECT = (
    "You said: {text}. I am a local stand-in responder, so I can only repeat that back.",
    "I heard: {text}. This offline stand-in does not understand more than that.",
)
_JOKES = (
    "Why did the scarecrow win an award? Because he was outstanding in his field.",
    "I told my computer a joke about memory. It forgot to laugh.",
    "Why do programmers prefer dark mode? Because light attracts bugs.",
    "What do you call a fish with no eyes? A fsh.",
)
_HELP = ("I can tell you the time or the date, do simple sums such as two plus three, "
         "tell you a joke, and tell you my name. What would you like?")

#: intent -> phrases (word sequences, matched on word boundaries), checked in this order
_PHRASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("recall", ("what did i ask", "what did i just ask", "what did i say", "what did i just say",
                "what was my question", "what was my last question")),
    ("name", ("your name", "who are you", "call you", "are you called")),
    ("date", ("date", "what day", "which day", "day is it", "day is today", "what month",
              "which month", "what year")),
    ("time", ("time", "what hour", "o'clock is it")),
    ("weather", ("weather", "rain", "raining", "sunny", "snow", "forecast", "cold outside",
                 "hot outside", "temperature")),
    ("joke", ("joke", "jokes", "funny", "laugh")),
    ("goodbye", ("goodbye", "good bye", "bye", "see you", "good night", "farewell",
                 "that is all", "that's all")),
    ("help", ("help", "what can you do", "what can i ask", "how do i use you",
              "what are you able")),
    ("greeting", ("hello", "hi", "hey", "good morning", "good afternoon", "good evening",
                  "how are you")),
)
#: every intent the responder answers (arithmetic is recognised by its numbers)
INTENTS = ("arithmetic", *(name for name, _ in _PHRASES))


def _words(text: str) -> list[str]:
    text = text.lower().replace("what's", "what is").replace("who's", "who is")
    return re.sub(r"[^a-z0-9'+\-*/ ]+", " ", text).split()


def detect_intent(text: str) -> str | None:
    """The intent of ``text`` (one of :data:`INTENTS`), or None for anything else."""
    words = _words(text)
    if answer_arithmetic(words) is not None:
        return "arithmetic"
    padded = f" {' '.join(words)} "
    for intent, phrases in _PHRASES:
        if any(f" {p} " in padded for p in phrases):
            return intent
    return None


def _clock_time(now: datetime) -> str:
    hour = now.hour % 12 or 12
    return f"It is {hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}."


def _calendar_date(now: datetime) -> str:
    return f"Today is {now.strftime('%A')}, {now.day} {now.strftime('%B %Y')}."


def respond(text: str, *, seed: int = 0, turn: int = 0, name: str = "Rusty",
            now: datetime | None = None, previous: str | None = None) -> str:
    """The full deterministic reply for a user utterance (``now`` for time and date;
    ``previous``: the user's message before this one, if any)."""
    words = _words(text)
    if not words:
        return "I did not catch that. Could you say it again?"
    intent = detect_intent(text)
    rng = random.Random(seed * 1_000_003 + turn)
    when = now or datetime.now().astimezone()
    if intent == "recall":
        if not previous:
            return "You have not asked me anything before that."
        return f"You asked: {' '.join(previous.split()).rstrip('.?!')}."
    if intent == "arithmetic":
        return answer_arithmetic(words) or ""
    if intent == "name":
        return f"My name is {name}, a local stand-in voice assistant."
    if intent == "time":
        return _clock_time(when)
    if intent == "date":
        return _calendar_date(when)
    if intent == "weather":
        return "I cannot check the weather offline, but I hope it is nice where you are."
    if intent == "joke":
        return rng.choice(_JOKES)
    if intent == "help":
        return _HELP
    if intent == "goodbye":
        return "Goodbye! Talk to you soon."
    if intent == "greeting":
        return "Hello! How can I help you today?"
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
        now: Callable[[], datetime] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        self.seed = seed
        self.token_delay_ms = token_delay_ms
        self.assistant_name = assistant_name
        #: wall-clock source of the time and date answers (local time zone by default)
        self.now = now or (lambda: datetime.now().astimezone())

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        users = [m.content for m in request.messages if m.role == "user"]
        turn = len(users)
        seed = self.seed if request.seed is None else request.seed
        reply = respond(request.last_user_text, seed=seed, turn=turn, name=self.assistant_name,
                        now=self.now(), previous=users[-2] if len(users) > 1 else None)
        words = reply.split(" ")
        for index, word in enumerate(words[: max(1, request.max_tokens)]):
            if self.token_delay_ms > 0:
                await self.clock.sleep(self.token_delay_ms / 1000)
            yield word if index == 0 else " " + word
