"""Data the provider contract streams: audio chunks, transcripts, chat messages.

Audio is always signed 16-bit little-endian PCM (``s16le``), mono unless
``channels`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "AudioChunk",
    "Capabilities",
    "ChatMessage",
    "LLMRequest",
    "ProviderKind",
    "Transcript",
]


class ProviderKind(StrEnum):
    STT = "stt"
    LLM = "llm"
    TTS = "tts"


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """A piece of PCM s16le audio."""

    pcm: bytes
    sample_rate: int
    channels: int = 1

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / (2 * self.channels * self.sample_rate)


@dataclass(frozen=True, slots=True)
class Transcript:
    """A partial (``is_final=False``) or final transcript hypothesis."""

    text: str
    is_final: bool
    confidence: float | None = None
    #: the provider decided the utterance ended (Deepgram ``speech_final``)
    speech_final: bool = False


Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """Conversation context for one LLM generation (tools are left for later)."""

    messages: tuple[ChatMessage, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    model: str | None = None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter supports, declared up front (F-055)."""

    kind: ProviderKind
    streaming: bool = True
    languages: tuple[str, ...] = ("en",)
    #: sample rates accepted (STT) or produced (TTS); empty for LLMs
    sample_rates: tuple[int, ...] = ()
    #: TTS: audio may start before the whole text exists (F-064)
    incremental_input: bool = False
    interim_results: bool = False
    offline: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    #: voices the adapter offers (TTS; empty: not enumerated)
    voices: tuple[str, ...] = ()
    #: the longest text one call takes, in characters (None: no declared limit)
    max_input_chars: int | None = None
