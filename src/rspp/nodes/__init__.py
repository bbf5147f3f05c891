"""Built-in node types (F-010), registered into ``rspp.kernel.default_registry`` on import.

``vad`` / ``turn_detector`` (endpointing policies, explicit end of utterance),
``stt``, ``llm``, ``sentence_segmenter``, ``tts``, ``error_speech``,
``resampler``, ``redaction``, ``compliance``, ``router`` plus the simple kernel nodes
(``passthrough``, ``merge``, ``select``). Type and port names match
``rspp.spec.BUILTIN_NODE_TYPES``. Providers and turn hooks reach the nodes
through :class:`NodeServices`, given to the session it builds (``SessionActor(services=...)``)
and read with :func:`services_of`.
"""

from rspp.kernel import Node as _Node
from rspp.kernel import default_registry as _registry
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
from rspp.nodes._plugins import (
    PYTHON_PREFIX,
    NodeCatalog,
    NodeLoadError,
    load_node_class,
    signature_of,
)
from rspp.nodes._resample import ResamplerNode
from rspp.nodes._router import RouterNode
from rspp.nodes._services import (
    NodeServices,
    TurnHooks,
    build_provider,
    default_services,
    services_of,
)
from rspp.nodes._stt import SttNode
from rspp.nodes._text import PII_PATTERNS, ComplianceNode, RedactionNode, SentenceSegmenter
from rspp.nodes._tts import ErrorSpeechNode, TtsNode
from rspp.nodes._vad import EOU_KIND, TurnDetectorNode, VadNode

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
    "PYTHON_PREFIX",
    "AdaptiveEndpointer",
    "AsyncPassthrough",
    "ComplianceNode",
    "Endpointer",
    "ErrorSpeechNode",
    "HangoverEndpointer",
    "LlmNode",
    "MergeNode",
    "NodeCatalog",
    "NodeLoadError",
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
    "build_provider",
    "default_services",
    "eos_event",
    "load_node_class",
    "make_endpointer",
    "services_of",
    "signature_of",
    "transcript_complete",
]
