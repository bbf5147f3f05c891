"""Provider subsystem: streaming STT/LLM/TTS contract, invocation control, secrets.

* :class:`STTProvider`, :class:`LLMProvider`, :class:`TTSProvider`: adapter bases
  (one attempt: timeout, cancel, metrics, normalised errors).
* :class:`InvocationController` and the typed :class:`STTController`,
  :class:`LLMController`, :class:`TTSController`: retries within budget, circuit
  breaker, provider switch/fallback, cost caps, RK-11 control signals.
* :class:`ProviderBatcher`: dynamic batching of compatible calls across sessions (F-051).
* :class:`SecretRef`/:class:`Secret`/:class:`Redactor`: secret references and redaction.

Adapters live in :mod:`rspp.providers.offline` and :mod:`rspp.providers.remote`.
"""

from rspp.providers._base import LLMProvider, Provider, STTProvider, TTSProvider
from rspp.providers._batching import (
    BUDGET_SHARE,
    Batch,
    BatchingPolicy,
    BatchMember,
    BatchStats,
    ProviderBatcher,
)
from rspp.providers._circuit import (
    CircuitBreaker,
    CircuitRegistry,
    CircuitState,
    CircuitTransition,
)
from rspp.providers._context import InvocationContext, SignalSink
from rspp.providers._controller import (
    BUDGET_EXHAUSTED,
    InvocationController,
    ReplayableInput,
    StickyChoice,
)
from rspp.providers._cost import CostCapExceeded, CostMeter, ProviderUsage, UsageKind, UsageSummary
from rspp.providers._http_pool import HttpClientPool, HttpPoolLimits
from rspp.providers._invocation import (
    InvocationCancelScope,
    InvocationMetrics,
    MetricsSink,
    ProviderInvocation,
    ProviderMetricsRecorder,
    new_invocation_id,
)
from rspp.providers._kinds import LLMController, STTController, TTSController
from rspp.providers._normalise import normalise_error, parse_retry_after
from rspp.providers._outcome import (
    RETRYABLE_OUTCOMES,
    Outcome,
    ProviderCallError,
    outcome_for_status,
)
from rspp.providers._policy import (
    POLICY_CONFIG_KEYS,
    BackoffPolicy,
    CircuitPolicy,
    CostCaps,
    InvocationPolicy,
    PolicyError,
    PriceTable,
    cost_caps_from_config,
    policy_from_config,
)
from rspp.providers._prometheus import BatchingCollector, PrometheusMetricsSink
from rspp.providers._registry import (
    ADAPTER_TYPES,
    ADAPTERS,
    PROVIDER_CATALOG,
    AdapterInfo,
    ProviderCatalog,
    adapter_info,
    create_provider,
)
from rspp.providers._routing import (
    RoutingDecision,
    RoutingRule,
    RoutingSignals,
    choose_chain,
    order_providers,
)
from rspp.providers._secrets import (
    REDACTED,
    RedactingFilter,
    Redactor,
    Secret,
    SecretConfigError,
    SecretRef,
    default_redactor,
    redact,
    resolve_secret,
)
from rspp.providers._types import (
    AudioChunk,
    Capabilities,
    ChatMessage,
    LLMRequest,
    ProviderKind,
    Transcript,
)

__all__ = [
    "ADAPTERS",
    "ADAPTER_TYPES",
    "BUDGET_EXHAUSTED",
    "BUDGET_SHARE",
    "POLICY_CONFIG_KEYS",
    "PROVIDER_CATALOG",
    "REDACTED",
    "RETRYABLE_OUTCOMES",
    "AdapterInfo",
    "AudioChunk",
    "BackoffPolicy",
    "Batch",
    "BatchMember",
    "BatchStats",
    "BatchingCollector",
    "BatchingPolicy",
    "Capabilities",
    "ChatMessage",
    "CircuitBreaker",
    "CircuitPolicy",
    "CircuitRegistry",
    "CircuitState",
    "CircuitTransition",
    "CostCapExceeded",
    "CostCaps",
    "CostMeter",
    "HttpClientPool",
    "HttpPoolLimits",
    "InvocationCancelScope",
    "InvocationContext",
    "InvocationController",
    "InvocationMetrics",
    "InvocationPolicy",
    "LLMController",
    "LLMProvider",
    "LLMRequest",
    "MetricsSink",
    "Outcome",
    "PolicyError",
    "PriceTable",
    "PrometheusMetricsSink",
    "Provider",
    "ProviderBatcher",
    "ProviderCallError",
    "ProviderCatalog",
    "ProviderInvocation",
    "ProviderKind",
    "ProviderMetricsRecorder",
    "ProviderUsage",
    "RedactingFilter",
    "Redactor",
    "ReplayableInput",
    "RoutingDecision",
    "RoutingRule",
    "RoutingSignals",
    "STTController",
    "STTProvider",
    "Secret",
    "SecretConfigError",
    "SecretRef",
    "SignalSink",
    "StickyChoice",
    "TTSController",
    "TTSProvider",
    "Transcript",
    "UsageKind",
    "UsageSummary",
    "adapter_info",
    "choose_chain",
    "cost_caps_from_config",
    "create_provider",
    "default_redactor",
    "new_invocation_id",
    "normalise_error",
    "order_providers",
    "outcome_for_status",
    "parse_retry_after",
    "policy_from_config",
    "redact",
    "resolve_secret",
]
