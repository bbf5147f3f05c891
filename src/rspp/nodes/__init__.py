"""Built-in node types (F-010), registered into ``rspp.runtime.default_registry`` on import.

``vad`` / ``turn_detector`` (endpointing policies, explicit end of utterance),
``stt``, ``llm``, ``sentence_segmenter``, ``tts``, ``error_speech``,
``resampler``, ``redaction``, ``compliance``, ``router`` plus the simple kernel nodes
(``passthrough``, ``merge``, ``select``). Type and port names match
``rspp.spec.BUILTIN_NODE_TYPES``. Providers and turn hooks reach the nodes
through :class:`NodeServices` bound per session (:func:`bind_services`).
"""

from rspp.nodes._builtin_simple import AsyncPassthrough, MergeNode, Passthrough, SelectNode
from rspp.nodes._endpointing import (
    ENDPOINTING_POLICIES,
    AdaptiveEndpointer,
    Endpointer,
    HangoverEndpointer,
    SilenceEndpointer,
    make_endpointer,
    transcript_complete,
)
from rspp.nodes._llm import LlmNode, eos_event
from rspp.nodes._resample import ResamplerNode
from rspp.nodes._router import RouterNode
from rspp.nodes._services import (
    PROVIDER_FACTORIES,
    NodeServices,
    TurnHooks,
    bind_services,
    build_provider,
    default_services,
    services_for,
    unbind_services,
)
from rspp.nodes._stt import SttNode
from rspp.nodes._text import PII_PATTERNS, ComplianceNode, RedactionNode, SentenceSegmenter
from rspp.nodes._tts import ErrorSpeechNode, TtsNode
from rspp.nodes._vad import EOU_KIND, TurnDetectorNode, VadNode
from rspp.runtime import Node as _Node
from rspp.runtime import default_registry as _registry

BUILTIN_NODES: tuple[type[_Node], ...] = (
    VadNode,
    TurnDetectorNode,
    SttNode,
    LlmNode,
    SentenceSegmenter,
    TtsNode,
    ErrorSpeechNode,
    ResamplerNode,
    RedactionNode,
    ComplianceNode,
    RouterNode,
)
for _cls in BUILTIN_NODES:
    _registry.register(_cls)

__all__ = [
    "BUILTIN_NODES",
    "ENDPOINTING_POLICIES",
    "EOU_KIND",
    "PII_PATTERNS",
    "PROVIDER_FACTORIES",
    "AdaptiveEndpointer",
    "AsyncPassthrough",
    "ComplianceNode",
    "Endpointer",
    "ErrorSpeechNode",
    "HangoverEndpointer",
    "LlmNode",
    "MergeNode",
    "NodeServices",
    "Passthrough",
    "RedactionNode",
    "ResamplerNode",
    "RouterNode",
    "SelectNode",
    "SentenceSegmenter",
    "SilenceEndpointer",
    "SttNode",
    "TtsNode",
    "TurnDetectorNode",
    "TurnHooks",
    "VadNode",
    "bind_services",
    "build_provider",
    "default_services",
    "eos_event",
    "make_endpointer",
    "services_for",
    "transcript_complete",
    "unbind_services",
]
