"""Offline adapters (the embedded default): pocketsphinx STT, espeak-ng TTS,
a deterministic local responder standing in for an LLM, and VADs."""

from rspp.providers.offline._espeak import EspeakEngine, EspeakTTS, resample_pcm, split_sentences
from rspp.providers.offline._pocketsphinx import PocketsphinxSTT
from rspp.providers.offline._responder import INTENTS, LocalResponderLLM, detect_intent, respond
from rspp.providers.offline._vad import EnergyVAD, VoiceActivityDetector, WebRtcVAD

__all__ = [
    "INTENTS",
    "EnergyVAD",
    "EspeakEngine",
    "EspeakTTS",
    "LocalResponderLLM",
    "PocketsphinxSTT",
    "VoiceActivityDetector",
    "WebRtcVAD",
    "detect_intent",
    "resample_pcm",
    "respond",
    "split_sentences",
]
