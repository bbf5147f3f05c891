"""Typed node ports, node signatures and the built-in node type catalog."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from typing import Literal, Protocol

import msgspec

from rspp.spec._deprecations import Deprecation

_FROZEN = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class PortType(StrEnum):
    """What flows through a port; an edge joins ports of equal type (or ``any``)."""

    AUDIO = "audio"
    TEXT = "text"
    VAD = "vad"
    CONTROL = "control"
    ANY = "any"


def compatible(source: PortType, target: PortType) -> bool:
    """Whether an edge from a ``source`` port may feed a ``target`` port."""
    return source == target or PortType.ANY in (source, target)


class PortSpec(msgspec.Struct, **_FROZEN):
    """One port. ``multi`` inputs accept fan-in; ``streaming`` outputs emit partial results."""

    name: str
    type: PortType
    required: bool = True
    multi: bool = False
    streaming: bool = False


ParamType = Literal["str", "int", "float", "bool", "list", "map", "any"]


class ParamSpec(msgspec.Struct, **_FROZEN):
    """One declared node parameter: ``rspp lint`` checks names, types and choices."""

    name: str
    type: ParamType = "any"
    default: object = None
    description: str = ""
    choices: tuple[str | int | float, ...] = ()
    #: the parameter's deprecation lifecycle (warning, enforcement, removal), if any
    deprecated: Deprecation | None = None


def param(
    name: str, type: ParamType = "any", default: object = None, description: str = "",
    choices: tuple[str | int | float, ...] = (), *, deprecated: Deprecation | None = None,
) -> ParamSpec:
    """Shorthand for :class:`ParamSpec` (node classes declare ``parameters = (param(..),)``)."""
    return ParamSpec(name=name, type=type, default=default, description=description,
                     choices=choices, deprecated=deprecated)


class NodeSignature(msgspec.Struct, **_FROZEN):
    """Ports, execution hints, declared params and default params of a node type.

    ``params`` is ``None`` for a type that declares nothing (any key accepted);
    declared, an unknown key is a lint warning (an error under ``--strict``).
    """

    type_name: str
    inputs: tuple[PortSpec, ...]
    outputs: tuple[PortSpec, ...]
    is_async: bool = False
    default_scope: Literal["session", "turn"] = "turn"
    default_cancel_mode: Literal["soft", "hard"] = "hard"
    default_params: dict[str, object] = {}
    provider_modality: Literal["stt", "llm", "tts"] | None = None
    description: str = ""
    params: tuple[ParamSpec, ...] | None = None

    def input(self, name: str) -> PortSpec | None:
        """The input port called ``name``, if any."""
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> PortSpec | None:
        """The output port called ``name``, if any."""
        return next((p for p in self.outputs if p.name == name), None)


class NodeTypeCatalog(Protocol):
    """Looks up the signature of a node type by name."""

    def signature(self, type_name: str) -> NodeSignature | None: ...


class StaticCatalog:
    """A :class:`NodeTypeCatalog` over a fixed mapping of signatures."""

    def __init__(self, signatures: Mapping[str, NodeSignature]) -> None:
        self._signatures = dict(signatures)

    def signature(self, type_name: str) -> NodeSignature | None:
        """The signature of ``type_name`` or ``None`` when unknown."""
        return self._signatures.get(type_name)

    def names(self) -> tuple[str, ...]:
        """Known type names, sorted."""
        return tuple(sorted(self._signatures))


def _p(name: str, kind: PortType, **kw: bool) -> PortSpec:
    return PortSpec(name=name, type=kind, **kw)


A, T, V, C, ANY = PortType.AUDIO, PortType.TEXT, PortType.VAD, PortType.CONTROL, PortType.ANY

#: ``vad`` ``params.policy`` was a second name for ``params.endpointing``
VAD_POLICY_DEPRECATION = Deprecation(
    since=date(2026, 11, 28), enforce_on=date(2027, 6, 1), remove_on=date(2027, 12, 1),
    migration="rename params.policy to params.endpointing (same values)")

_BUILTINS = (
    NodeSignature(
        type_name="vad", inputs=(_p("audio", A),), outputs=(_p("audio", A), _p("vad", V)),
        default_scope="session", default_params={"engine": "energy", "threshold_db": -40.0},
        description="Voice activity detection; forwards audio and emits speech start/stop events.",
        params=(
            param("engine", "str", "energy", "speech detector", ("energy", "webrtc", "webrtcvad")),
            param("threshold_db", "float", -40.0, "energy VAD: speech above this level (dBFS)"),
            param("aggressiveness", "int", 2, "webrtc VAD aggressiveness 0..3", (0, 1, 2, 3)),
            param("endpointing", "str", "silence", "end-of-utterance policy"),
            param("policy", "str", None, "alias of endpointing (deprecated)",
                  deprecated=VAD_POLICY_DEPRECATION),
            param("silence_ms", "float", None, "silence that ends an utterance"),
            param("min_speech_ms", "float", None, "voiced time before speech starts"),
            param("per_second_ms", "float", None, "hangover: silence added per second of speech"),
            param("max_silence_ms", "float", None, "hangover: longest silence window"),
        ),
    ),
    NodeSignature(
        type_name="turn_detector", inputs=(_p("vad", V), _p("text", T, required=False)),
        outputs=(_p("turn", C),), default_scope="session",
        default_params={"silence_ms": 500},
        description="Turns speech activity (and optionally transcripts) into turn boundaries.",
        params=(
            param("silence_ms", "float", 500, "silence that ends a turn"),
            param("min_utterance_ms", "float", 200, "shorter utterances never become turns"),
        ),
    ),
    NodeSignature(
        type_name="stt", inputs=(_p("audio", A), _p("vad", V, required=False)),
        outputs=(_p("partial", T, streaming=True), _p("final", T)), is_async=True,
        provider_modality="stt", description="Speech to text: partial and final transcripts.",
        params=(
            param("preroll_ms", "float", 300, "audio kept from before speech start"),
            param("partials", "bool", True, "emit partial transcripts"),
        ),
    ),
    NodeSignature(
        type_name="llm", inputs=(_p("text", T),), outputs=(_p("text", T, streaming=True),),
        is_async=True, provider_modality="llm", default_cancel_mode="hard",
        description="Language model: streams response tokens for a final transcript.",
        params=(
            param("system_prompt", "str", "", "instructions sent before the conversation"),
            param("max_history", "int", 20, "conversation messages kept"),
            param("max_tokens", "int", 256, "longest reply"),
        ),
    ),
    NodeSignature(
        type_name="sentence_segmenter", inputs=(_p("text", T),), outputs=(_p("text", T),),
        default_params={"min_chars": 8}, description="Groups streamed tokens into sentences.",
        params=(param("min_chars", "int", 8, "shortest sentence sent to TTS"),),
    ),
    NodeSignature(
        type_name="tts", inputs=(_p("text", T),), outputs=(_p("audio", A, streaming=True),),
        is_async=True, provider_modality="tts", default_cancel_mode="soft",
        description="Text to speech: streams synthesised audio per sentence.",
        params=(param("degrade_to_text", "bool", True, "reply as text when TTS fails"),),
    ),
    NodeSignature(
        type_name="resampler", inputs=(_p("audio", A),), outputs=(_p("audio", A),),
        default_params={"rate_hz": 16000}, description="Resamples audio (soxr).",
        params=(param("rate_hz", "int", 16000, "output sample rate"),
                param("channels", "int", 1, "output channels")),
    ),
    NodeSignature(
        type_name="redaction", inputs=(_p("text", T),), outputs=(_p("text", T),),
        default_params={"patterns": ["email", "phone", "card"]},
        description="Redacts PII from text before it leaves the pipeline.",
        params=(param("patterns", "list", None, "built-in patterns: email, phone, card"),
                param("custom", "map", None, "name -> regular expression"),
                param("replacement", "str", "[redacted {name}]", "replacement text")),
    ),
    NodeSignature(
        type_name="compliance", inputs=(_p("text", T),), outputs=(_p("text", T),),
        default_params={"blocked_terms": []}, description="Blocks or rewrites disallowed text.",
        params=(param("blocked_terms", "list", None, "terms that trigger the action"),
                param("action", "str", "block", "what happens to matching text"),
                param("replacement", "str", None, "text said instead")),
    ),
    NodeSignature(
        type_name="passthrough", inputs=(_p("in", ANY),), outputs=(_p("out", ANY),),
        description="Forwards every event unchanged.",
    ),
    NodeSignature(
        type_name="merge", inputs=(_p("in", ANY, multi=True),), outputs=(_p("out", ANY),),
        default_params={"rule": "timestamp", "rule_version": "1.0"},
        description="Fan-in: merges streams in a deterministic order (rule id + version).",
        params=(param("rule", "str", None, "merge rule id"),
                param("rule_version", "str", None, "merge rule version"),
                param("order", "list", None, "upstream node ids in priority order")),
    ),
    NodeSignature(
        type_name="select", inputs=(_p("in", ANY, multi=True),), outputs=(_p("out", ANY),),
        default_params={"policy": "first_healthy"},
        description="Fan-in: forwards one input stream chosen by policy; emits an audit event.",
        params=(param("policy", "str", None, "selection policy"),
                param("order", "list", None, "upstream node ids in priority order"),
                param("attribute", "str", None, "attribute policy: event attribute to read"),
                param("mapping", "map", None, "attribute value -> upstream node id")),
    ),
    NodeSignature(
        type_name="router", inputs=(_p("in", ANY),), outputs=(_p("out", ANY),),
        description="Routes events to conditional out-edges (`when:`).",
    ),
    NodeSignature(
        type_name="error_speech", inputs=(_p("in", ANY, required=False),),
        outputs=(_p("audio", A),), default_cancel_mode="soft",
        default_params={"text": "Sorry, something went wrong. Please try again."},
        description="Speaks a fixed apology; the usual fallback for a failing stage.",
        params=(param("text", "str", None, "the apology spoken"),),
    ),
)

#: Signatures of every built-in node type.
BUILTIN_NODE_TYPES = StaticCatalog({sig.type_name: sig for sig in _BUILTINS})
