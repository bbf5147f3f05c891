"""The text the offline STT's domain language model is built from.

Two parts: sentences for every intent the local responder answers (time, date,
name, arithmetic, weather, jokes, help, goodbye, greetings), generated from
templates, and a general fallback of everyday assistant requests so speech
outside those intents still decodes to plausible words. Words come from the
pocketsphinx dictionary; the model is built at start-up (see ``_lm.py``).
"""

from __future__ import annotations

from itertools import product

__all__ = ["DIGIT_WORDS", "domain_sentences"]

DIGIT_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy",
    "eighty", "ninety", "hundred",
)  # fmt: skip

_OPERATORS = ("plus", "minus", "times", "divided by", "multiplied by")
_ASK_SUM = ("what is", "what's", "how much is", "calculate", "what do you get for")

_INTENTS = (
    # time
    "what time is it", "what time is it now", "tell me the time", "tell me the time please",
    "what's the time", "do you know what time it is", "can you tell me the time",
    "what is the time", "what is the time now", "the time please", "time please",
    # date
    "what is the date", "what is the date today", "what's the date today", "what day is it",
    "what day is it today", "tell me the date", "tell me the date please",
    "what is today's date", "which day is today", "what month is it", "what year is it",
    # name
    "what is your name", "what's your name", "who are you", "tell me your name",
    "what should i call you", "do you have a name", "what are you called",
    # weather
    "what is the weather", "what is the weather like", "what is the weather like today",
    "what's the weather like today", "how is the weather", "how is the weather today",
    "how is the weather outside", "will it rain today", "will it rain tomorrow",
    "is it going to rain", "is it cold outside", "is it sunny today",
    "what is the weather forecast for tomorrow",
    # jokes
    "tell me a joke", "tell me a funny joke", "tell me another joke", "do you know any jokes",
    "do you know a joke", "say something funny", "make me laugh", "tell me something funny",
    # help
    "help", "help me", "help me please", "can you help me", "can you help me please",
    "what can you do", "what can i ask you", "how do i use you", "how can you help me",
    "what are you able to do",
    # goodbye
    "goodbye", "good bye", "bye", "bye bye", "bye for now", "see you later", "see you soon",
    "thank you goodbye", "thanks goodbye", "that is all thank you", "good night",
    # greetings and thanks
    "hello", "hello there", "hi", "hi there", "hey there", "good morning", "good afternoon",
    "good evening", "how are you", "how are you today", "thank you", "thanks",
)  # fmt: skip

_GENERAL = (
    "i would like to book a table", "i would like a cup of coffee", "i would like to go home",
    "book a table for four people tonight", "book a flight to london for next week",
    "turn on the lights", "turn off the lights in the living room", "turn on the radio",
    "turn the music down", "turn up the volume", "open the door", "close the window",
    "play some music", "play my favourite song", "play the news", "stop the music",
    "set a timer for ten minutes", "set an alarm for six o'clock in the morning",
    "wake me up at seven", "remind me to buy milk", "remind me to call my friend",
    "call my mother", "call my father at home", "send a message to my brother",
    "what is on my calendar today", "add eggs to the shopping list",
    "the bus leaves at eight in the evening", "the meeting starts at ten in the morning",
    "the train is late again", "i am going to the office", "we are going to the park",
    "where is the nearest station", "how far is the airport from here",
    "how long does it take to get there", "what is the capital of spain",
    "who wrote this book", "how old is the earth", "how big is the sun",
    "what is the population of the world", "how do you spell this word",
    "what does this word mean", "translate this into french", "read me a story",
    "i need some help with my homework", "what should i cook for dinner",
    "find a good restaurant near me", "how do i get to the city centre",
    "show me the way to the hospital", "is the shop open on sunday",
    "my name is john", "nice to meet you", "yes please", "no thank you", "not now",
    "that is right", "that is wrong", "i do not know", "say that again", "repeat that please",
    "speak more slowly", "cancel that", "never mind", "stop", "wait a moment",
    "this is a test", "can you hear me", "i like it very much", "it is a nice day",
)  # fmt: skip


def _arithmetic() -> list[str]:
    """Every number on both sides of every operator, each once (a balanced sample)."""
    numbers = DIGIT_WORDS[:21]
    out = []
    for i, (n, op) in enumerate(product(numbers, _OPERATORS)):
        ask = _ASK_SUM[i % len(_ASK_SUM)]
        m = numbers[(i * 7 + 3) % len(numbers)]
        out += [f"{ask} {n} {op} {m}", f"{ask} {m} {op} {n}"]
    return out


def domain_sentences(*, intent_weight: int = 4, general_weight: int = 2) -> list[str]:
    """The domain model's training text: intents (repeated ``intent_weight`` times so
    they outweigh the arithmetic grid), arithmetic, then the general fallback."""
    return [*_INTENTS * intent_weight, *_arithmetic(), *_GENERAL * general_weight]
