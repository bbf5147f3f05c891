"""Remote adapters: OpenAI-compatible chat and (batched) completions, Anthropic Messages,
Deepgram live STT, ElevenLabs stream-input TTS and OpenAI TTS (httpx and websockets)."""

from rspp.providers.remote._anthropic import AnthropicLLM
from rspp.providers.remote._common import error_from_response, iter_sse, vendor_outcome
from rspp.providers.remote._deepgram import DeepgramSTT
from rspp.providers.remote._elevenlabs import ElevenLabsTTS
from rspp.providers.remote._openai_chat import OpenAIChatLLM
from rspp.providers.remote._openai_completions import OpenAICompletionsLLM, completion_prompt
from rspp.providers.remote._openai_tts import OpenAITTS

__all__ = [
    "AnthropicLLM",
    "DeepgramSTT",
    "ElevenLabsTTS",
    "OpenAIChatLLM",
    "OpenAICompletionsLLM",
    "OpenAITTS",
    "completion_prompt",
    "error_from_response",
    "iter_sse",
    "vendor_outcome",
]
