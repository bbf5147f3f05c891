"""Spoken arithmetic for the local responder: "what's twenty one times three".

Numbers are words ("twenty one", "a hundred") or digits; operators are words
("plus", "minus", "times", "multiplied by", "divided by", "over") or symbols.
"""

from __future__ import annotations

__all__ = ["answer_arithmetic", "say_number"]

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_WORDS = {v: k for k, v in {**_UNITS, **_TENS}.items() if k != "oh"}
_OPS = {
    "plus": "+", "add": "+", "and": "+", "minus": "-", "less": "-", "take": "-",
    "times": "*", "multiplied": "*", "x": "*", "divided": "/", "over": "/",
    "+": "+", "-": "-", "*": "*", "/": "/",
}  # fmt: skip
_LINKS = ("by", "to", "away")  # "multiplied by", "added to", "take away"


def _read_number(words: list[str], i: int) -> tuple[int, int] | None:
    """The number starting at ``words[i]`` and the index after it, or None."""
    if i >= len(words):
        return None
    w = words[i]
    if w.isdigit():
        return int(w), i + 1
    if w in ("a", "one") and i + 1 < len(words) and words[i + 1] == "hundred":
        value, j = 100, i + 2
    elif w in _TENS:
        value, j = _TENS[w], i + 1
        if j < len(words) and words[j] in _UNITS and _UNITS[words[j]] < 10:
            value, j = value + _UNITS[words[j]], j + 1
        return value, j
    elif w in _UNITS:
        value, j = _UNITS[w], i + 1
        if j < len(words) and words[j] == "hundred":
            value, j = value * 100, j + 1
        else:
            return value, j
    elif w == "hundred":
        value, j = 100, i + 1
    else:
        return None
    if j < len(words) and words[j] == "and":  # "a hundred and five"
        rest = _read_number(words, j + 1)
        if rest is not None and rest[0] < 100:
            return value + rest[0], rest[1]
    return value, j


def say_number(value: float) -> str:
    """A number as words ("forty two", "minus three", "two point five")."""
    if value != int(value):
        whole, frac = f"{value:.2f}".rstrip("0").split(".")
        return f"{say_number(int(whole))} point {' '.join(say_number(int(d)) for d in frac)}"
    n = int(value)
    if n < 0:
        return "minus " + say_number(-n)
    if n in _WORDS:
        return _WORDS[n]
    if n < 100:
        return f"{_WORDS[n - n % 10]} {_WORDS[n % 10]}"
    if n < 1000:
        rest = f" and {say_number(n % 100)}" if n % 100 else ""
        return f"{_WORDS[n // 100]} hundred{rest}"
    return str(n)


def answer_arithmetic(words: list[str]) -> str | None:
    """``"two plus three is five."`` for the first "NUMBER OP NUMBER" in ``words``."""
    i = 0
    while i < len(words):
        left = _read_number(words, i)
        if left is None:
            i += 1
            continue
        a, j = left
        op = _OPS.get(words[j]) if j < len(words) else None
        if op is None:
            i = max(j, i + 1)
            continue
        k = j + 1
        while k < len(words) and words[k] in _LINKS:
            k += 1
        right = _read_number(words, k)
        if right is None:
            i = j
            continue
        b = right[0]
        if op == "+":
            result: float = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        elif b == 0:
            return "Dividing by zero is not defined."
        else:
            result = a / b
        op_words = " ".join(words[j:k])
        return f"{say_number(a)} {op_words} {say_number(b)} is {say_number(result)}."
    return None
