"""Authoring: PipelineSpec/ExecutionProfile models, YAML loading, lint and graph compiler.

``parse_spec_text``/``load_spec`` decode a spec (raising :class:`SpecInvalid` with
``.issues``), ``lint_text`` reports every problem, ``compile_spec`` produces the immutable
:class:`GraphDefinition` the kernel instantiates sessions from, ``resolve_effective``
applies environment/tenant/session layers and reports the source of every value.
"""

from rspp.spec._catalog import (
    BUILTIN_NODE_TYPES,
    NodeSignature,
    NodeTypeCatalog,
    ParamSpec,
    ParamType,
    PortSpec,
    PortType,
    StaticCatalog,
    compatible,
    param,
)
from rspp.spec._compiler import compile_spec
from rspp.spec._condition import Condition, ConditionError, compile_condition
from rspp.spec._deprecations import Deprecation, day_of
from rspp.spec._docs import generate_docs
from rspp.spec._graph import (
    Budgets,
    EdgeDef,
    FallbackDef,
    FrozenMap,
    GraphDefinition,
    GraphPort,
    MergeDef,
    NodeDef,
    ProviderBinding,
    SelectDef,
    Sourced,
    ValueSource,
)
from rspp.spec._issues import LintIssue, SpecInvalid
from rspp.spec._jitter import (
    JITTER_PRESETS,
    TRANSPORT_DEFAULTS,
    JitterProfile,
    JitterProfiles,
    compile_jitter,
)
from rspp.spec._layers import (
    ALLOWED_KEYS,
    ENV_PREFIX,
    ConfigLayers,
    EffectiveSpec,
    ResolvedValue,
    load_layers,
    policy_inserts,
    resolve_effective,
)
from rspp.spec._lint import lint_text
from rspp.spec._loader import (
    load_spec,
    parse_spec_text,
    read_spec_source,
    spec_hash,
)
from rspp.spec._model import (
    BudgetsSpec,
    BufferOverride,
    EdgeSpec,
    FallbackSpec,
    FlowControlSpec,
    JitterSpec,
    NodeSpec,
    PipelineSpec,
    PortDecl,
    PortsDecl,
    ProviderSpec,
    ProvidersSpec,
    RecordingSpec,
    SessionSloSpec,
    SloSpec,
    SubgraphUse,
    TransportSpec,
)
from rspp.spec._profile import POST_MVP_PROFILES, PROFILES, SIMPLE_V1, ExecutionProfile
from rspp.spec._providers_check import ProviderAdapterCatalog, check_providers
from rspp.spec._subgraphs import FileSubgraphResolver, MappingSubgraphResolver, SubgraphResolver
from rspp.spec._yaml import MAX_SPEC_BYTES, MAX_SPEC_DEPTH, SourceMap, load_document

__all__ = [
    "ALLOWED_KEYS",
    "BUILTIN_NODE_TYPES",
    "ENV_PREFIX",
    "JITTER_PRESETS",
    "MAX_SPEC_BYTES",
    "MAX_SPEC_DEPTH",
    "POST_MVP_PROFILES",
    "PROFILES",
    "SIMPLE_V1",
    "TRANSPORT_DEFAULTS",
    "Budgets",
    "BudgetsSpec",
    "BufferOverride",
    "Condition",
    "ConditionError",
    "ConfigLayers",
    "Deprecation",
    "EdgeDef",
    "EdgeSpec",
    "EffectiveSpec",
    "ExecutionProfile",
    "FallbackDef",
    "FallbackSpec",
    "FileSubgraphResolver",
    "FlowControlSpec",
    "FrozenMap",
    "GraphDefinition",
    "GraphPort",
    "JitterProfile",
    "JitterProfiles",
    "JitterSpec",
    "LintIssue",
    "MappingSubgraphResolver",
    "MergeDef",
    "NodeDef",
    "NodeSignature",
    "NodeSpec",
    "NodeTypeCatalog",
    "ParamSpec",
    "ParamType",
    "PipelineSpec",
    "PortDecl",
    "PortSpec",
    "PortType",
    "PortsDecl",
    "ProviderAdapterCatalog",
    "ProviderBinding",
    "ProviderSpec",
    "ProvidersSpec",
    "RecordingSpec",
    "ResolvedValue",
    "SelectDef",
    "SessionSloSpec",
    "SloSpec",
    "SourceMap",
    "Sourced",
    "SpecInvalid",
    "StaticCatalog",
    "SubgraphResolver",
    "SubgraphUse",
    "TransportSpec",
    "ValueSource",
    "check_providers",
    "compatible",
    "compile_condition",
    "compile_jitter",
    "compile_spec",
    "day_of",
    "generate_docs",
    "lint_text",
    "load_document",
    "load_layers",
    "load_spec",
    "param",
    "parse_spec_text",
    "policy_inserts",
    "read_spec_source",
    "resolve_effective",
    "spec_hash",
]
