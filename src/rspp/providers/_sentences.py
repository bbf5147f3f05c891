"""Sentence-by-sentence TTS streaming: playback starts before the full text exists (F-064)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

from rspp.providers._types import AudioChunk

__all__ = ["speak_by_sentence", "split_sentences"]

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Split complete sentences off ``buffer``; returns (sentences, remainder)."""
    parts = _SENTENCE_END.split(buffer)
    if len(parts) == 1:
        return [], buffer
    complete = [p.strip() for p in parts[:-1] if p.strip()]
    return complete, parts[-1]


async def speak_by_sentence(
    text: AsyncIterator[str], render: Callable[[str], AsyncIterator[AudioChunk]]
) -> AsyncIterator[AudioChunk]:
    """Render each sentence as soon as it is complete, then the remainder at end of text."""
    buffer = ""
    async for piece in text:
        buffer += piece
        sentences, buffer = split_sentences(buffer)
        for sentence in sentences:
            async for chunk in render(sentence):
                yield chunk
    if buffer.strip():
        async for chunk in render(buffer.strip()):
            yield chunk
