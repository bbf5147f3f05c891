"""Plan-like configuration of invocations: timeouts, retries, circuits, caps, prices."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import msgspec

from rspp.errors import ProviderError

__all__ = [
    "COST_CAP_FIELDS",
    "POLICY_CONFIG_KEYS",
    "BackoffPolicy",
    "CircuitPolicy",
    "CostCaps",
    "InvocationPolicy",
    "PolicyError",
    "PriceTable",
    "cost_caps_from_config",
    "policy_from_config",
]

#: keys of a provider binding's ``config`` that tune the invocation policy, not the adapter
POLICY_CONFIG_KEYS = ("circuit", "retry", "price", "cost_cap", "sticky_fallback")
#: the :class:`CostCaps` fields ``config.cost_cap.per_turn``/``per_session`` set per modality
COST_CAP_FIELDS = {
    "llm": ("llm_tokens_per_turn", "llm_tokens_per_session"),
    "stt": ("stt_audio_seconds_per_turn", "stt_audio_seconds_per_session"),
    "tts": ("tts_chars_per_turn", "tts_chars_per_session"),
}
#: what ``config.price`` is per modality (USD), for the session's cost estimate (F-075)
PRICE_UNITS = {"llm": "per 1000 LLM tokens", "stt": "per minute of audio",
               "tts": "per 1000 characters"}


class PolicyError(ProviderError):
    """An invocation policy value is invalid (names the field and how to fix it)."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise PolicyError(message)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff between retries; deterministic (no jitter by default)."""

    initial_ms: int = 100
    multiplier: float = 2.0
    max_ms: int = 2_000
    #: honour a server's Retry-After hint, capped at ``max_ms``
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        _check(self.initial_ms >= 0, f"backoff.initial_ms={self.initial_ms}: must be >= 0")
        _check(self.multiplier >= 1.0, f"backoff.multiplier={self.multiplier}: must be >= 1.0")
        _check(self.max_ms >= self.initial_ms, "backoff.max_ms must be >= backoff.initial_ms")

    def delay_ms(self, retry_index: int, retry_after_s: float | None = None) -> int:
        """Delay before retry number ``retry_index`` (1-based)."""
        delay = self.initial_ms * self.multiplier ** max(0, retry_index - 1)
        if self.respect_retry_after and retry_after_s is not None:
            delay = max(delay, retry_after_s * 1000)
        return int(min(delay, self.max_ms))


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
    """Per-provider circuit breaker on error rate with half-open probing (F-057)."""

    #: open when the failure rate over the window reaches this fraction
    error_rate_threshold: float = 0.5
    window: int = 10
    min_calls: int = 4
    cooldown_ms: int = 5_000
    #: successful probes needed in half-open before closing again
    half_open_successes: int = 1

    def __post_init__(self) -> None:
        _check(
            0.0 < self.error_rate_threshold <= 1.0,
            f"circuit.error_rate_threshold={self.error_rate_threshold}: must be in (0, 1]",
        )
        _check(self.window >= 1, f"circuit.window={self.window}: must be >= 1")
        _check(
            1 <= self.min_calls <= self.window,
            f"circuit.min_calls={self.min_calls}: must be between 1 and circuit.window",
        )
        _check(self.cooldown_ms >= 0, f"circuit.cooldown_ms={self.cooldown_ms}: must be >= 0")
        _check(self.half_open_successes >= 1, "circuit.half_open_successes must be >= 1")


@dataclass(frozen=True, slots=True)
class CostCaps:
    """Spend caps per turn and per session (F-058, NF-017); ``None`` = uncapped."""

    llm_tokens_per_turn: int | None = None
    llm_tokens_per_session: int | None = None
    stt_audio_seconds_per_turn: float | None = None
    stt_audio_seconds_per_session: float | None = None
    tts_chars_per_turn: int | None = None
    tts_chars_per_session: int | None = None

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            _check(value is None or value > 0, f"cost_caps.{name}={value}: must be > 0 or unset")


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Unit prices for cost estimates (F-075); per provider id, USD."""

    per_1k_llm_tokens: dict[str, float] = field(default_factory=dict)
    per_stt_audio_minute: dict[str, float] = field(default_factory=dict)
    per_1k_tts_chars: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvocationPolicy:
    """How one modality's provider calls run within a turn (from the frozen plan).

    ``providers`` is the allowed provider order (primary first, then fallbacks);
    with ``allow_fallback=False`` only the first is ever used. ``remaining_budget_ms``
    returns the turn's remaining time budget (``None``: not bounded); every attempt's
    timeout and every backoff fit inside it, and retries and fallbacks stop when it
    cannot cover another attempt (F-046, F-059).
    """

    providers: tuple[str, ...]
    timeout_ms: int = 5_000
    max_retries: int = 2
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    allow_fallback: bool = True
    #: minimum budget an attempt needs to be worth starting
    min_attempt_ms: int = 50
    remaining_budget_ms: Callable[[], int | None] | None = None
    circuit: CircuitPolicy = field(default_factory=CircuitPolicy)
    #: after a fallback succeeds, later calls of the session start with that provider
    #: (F-047) until it fails or fresh health signals order the providers again
    sticky_fallback: bool = False

    def __post_init__(self) -> None:
        _check(len(self.providers) >= 1, "policy.providers: list at least one provider id")
        _check(
            len(set(self.providers)) == len(self.providers),
            f"policy.providers={list(self.providers)}: provider ids must be unique",
        )
        _check(self.timeout_ms >= 1, f"policy.timeout_ms={self.timeout_ms}: must be >= 1")
        _check(self.max_retries >= 0, f"policy.max_retries={self.max_retries}: must be >= 0")
        _check(self.min_attempt_ms >= 0, "policy.min_attempt_ms must be >= 0")

    def budget_ms(self) -> int | None:
        if self.remaining_budget_ms is None:
            return None
        remaining = self.remaining_budget_ms()
        return None if remaining is None else max(0, int(remaining))


def _cost_cap(path: str, raw: object) -> dict[str, float]:
    """``{per_turn, per_session}`` of ``config.cost_cap`` (numbers > 0; either may be left out)."""
    if not isinstance(raw, Mapping) or not raw or set(raw) - {"per_turn", "per_session"}:
        raise PolicyError(f"{path}: expected a mapping with per_turn and/or per_session "
                          f"(tokens for llm, seconds of audio for stt, characters for tts)")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise PolicyError(f"{path}.{key}={value!r}: must be a number > 0")
    return {str(k): float(v) for k, v in raw.items()}


def cost_caps_from_config(configs: Mapping[str, Mapping[str, object]]) -> CostCaps:
    """The session's :class:`CostCaps` from each modality's ``config.cost_cap`` (F-058)."""
    caps: dict[str, float | int] = {}
    for modality, config in configs.items():
        if "cost_cap" not in config or modality not in COST_CAP_FIELDS:
            continue
        turn_field, session_field = COST_CAP_FIELDS[modality]
        cap = _cost_cap(f"providers.{modality}.config.cost_cap", config["cost_cap"])
        as_type = float if modality == "stt" else int
        for key, name in (("per_turn", turn_field), ("per_session", session_field)):
            if key in cap:
                caps[name] = as_type(cap[key])
    return CostCaps(**caps)  # type: ignore[arg-type]


_D = TypeVar("_D", CircuitPolicy, BackoffPolicy)
_RETRY_KEYS = ("max_retries", "min_attempt_ms")


def _section(
    path: str, raw: object, cls: type[_D], extra: tuple[str, ...] = ()
) -> tuple[_D, dict[str, Any]]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: expected a mapping such as {{{fields(cls)[0].name}: ...}}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(str(k) for k in raw if k not in known and k not in extra)
    if unknown:
        raise PolicyError(f"{path}: unknown field(s) {unknown}; use {sorted(known | set(extra))}")
    own = {k: v for k, v in raw.items() if k in known}
    try:
        return msgspec.convert(own, cls), {k: raw[k] for k in extra if k in raw}
    except msgspec.ValidationError as exc:
        raise PolicyError(f"{path}: {exc}".replace("$.", f"{path}.")) from None


def policy_from_config(
    providers: tuple[str, ...], timeout_ms: int, config: Mapping[str, object], *,
    path: str = "config", max_retries: int = 1,
) -> InvocationPolicy:
    """The invocation policy a provider binding's ``config`` asks for (F-057, F-059).

    ``config.circuit`` holds :class:`CircuitPolicy` fields; ``config.retry`` holds
    :class:`BackoffPolicy` fields plus ``max_retries`` and ``min_attempt_ms``;
    ``config.sticky_fallback`` (bool) keeps a session on a fallback that answered. Every
    error names the field (``path.circuit.window``) and the allowed values.
    """
    circuit = CircuitPolicy()
    backoff = BackoffPolicy()
    tuning: dict[str, Any] = {}
    if "cost_cap" in config:
        _cost_cap(f"{path}.cost_cap", config["cost_cap"])
    price = config.get("price", 0.0)
    if isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price < 1e6:
        raise PolicyError(f"{path}.price={price!r}: must be a number >= 0 (USD "
                          f"{', '.join(f'{u} for {m}' for m, u in PRICE_UNITS.items())})")
    if "circuit" in config:
        circuit, _ = _section(f"{path}.circuit", config["circuit"], CircuitPolicy)
    if "retry" in config:
        backoff, tuning = _section(f"{path}.retry", config["retry"], BackoffPolicy, _RETRY_KEYS)
    for key, value in tuning.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise PolicyError(f"{path}.retry.{key}={value!r}: must be an integer")
    sticky = config.get("sticky_fallback", False)
    if not isinstance(sticky, bool):
        raise PolicyError(f"{path}.sticky_fallback={sticky!r}: must be true or false (true: "
                          "after a fallback answered, the session's later calls start with it)")
    return InvocationPolicy(
        providers=providers, timeout_ms=timeout_ms,
        max_retries=tuning.get("max_retries", max_retries), backoff=backoff,
        min_attempt_ms=tuning.get("min_attempt_ms", 50), circuit=circuit,
        sticky_fallback=sticky,
    )
