"""Build adapters from configuration by kind and adapter name (F-055).

Pipeline specs name providers by adapter (``providers.llm.primary: anthropic``)
or by an id with ``config.adapter``; policies use ``{"type": "openai", ..}``
mappings. :func:`create_provider` turns either into an adapter; swapping the
name swaps the adapter without touching the nodes that drive it.

Every adapter is described once in :data:`ADAPTERS` (name, kind, class, the
environment variables it reads, the pip extra it needs). At session start
:func:`create_provider`:

* refuses an unknown name or option, listing the valid ones;
* fills ``base_url`` from the adapter's ``*_BASE_URL`` variable when the spec
  leaves it out (a local server or a test fake without editing the spec);
* requires the API key up front: ``api_key: env://NAME`` must be set, and an
  adapter without ``api_key`` and without a ``base_url`` in the spec uses its
  standard variable (``OPENAI_API_KEY``...); a spec's own ``base_url`` (a local
  server) never receives the vendor's key implicitly. A missing key is
  one :class:`~rspp.providers.SecretConfigError` naming the variable, before
  any audio flows, never a per-turn provider failure.

:data:`PROVIDER_CATALOG` exposes names and option checks to ``rspp lint``
(the spec layer takes it as an injected catalog).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from rspp.providers._base import Provider
from rspp.providers._batching import ProviderBatcher
from rspp.providers._http_pool import HttpClientPool
from rspp.providers._policy import POLICY_CONFIG_KEYS, PolicyError, policy_from_config
from rspp.providers._secrets import SecretConfigError, SecretRef
from rspp.providers._types import ProviderKind

__all__ = [
    "ADAPTERS",
    "ADAPTER_TYPES",
    "PROVIDER_CATALOG",
    "AdapterInfo",
    "ProviderCatalog",
    "adapter_info",
    "create_provider",
]


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One selectable adapter: what ``providers.<modality>.primary: NAME`` builds."""

    name: str
    kind: ProviderKind
    #: ``module:Class``, imported only when the adapter is built or checked
    target: str
    summary: str
    #: standard variable holding the API key (``None``: no key needed)
    key_env: str | None = None
    #: variable that overrides the default endpoint when the spec sets no ``base_url``
    base_url_env: str | None = None
    #: ``pip install 'rspp[EXTRA]'`` brings the adapter's optional dependencies
    extra: str | None = None
    #: option defaults of this name (they differ from the class defaults)
    defaults: Mapping[str, object] = field(default_factory=dict)

    def load(self) -> type[Provider]:
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"install it with: pip install 'rspp[{self.extra}]'" if self.extra else ""
            raise PolicyError(
                f"{self.kind.value} adapter {self.name!r} needs {exc.name or 'a module'} "
                f"which is not installed; {hint}".rstrip("; ")
            ) from None
        cls: type[Provider] = getattr(module, class_name)
        return cls

    def options(self) -> dict[str, str]:
        """Option name -> type text, for docs and error messages."""
        cls = self.load()
        hints = _hints(cls)
        names = _accepted(cls) - _NOT_OPTIONS
        notes: Mapping[str, str] = getattr(cls, "option_notes", {})  # structured options
        return {n: notes.get(n) or _type_text(hints.get(n)) for n in sorted(names)}


ADAPTERS: tuple[AdapterInfo, ...] = (
    AdapterInfo("pocketsphinx", ProviderKind.STT,
                "rspp.providers.offline._pocketsphinx:PocketsphinxSTT",
                "offline STT (model ships in the wheel)", extra="speech"),
    AdapterInfo("deepgram", ProviderKind.STT, "rspp.providers.remote._deepgram:DeepgramSTT",
                "Deepgram live streaming STT over WebSocket",
                key_env="DEEPGRAM_API_KEY", base_url_env="DEEPGRAM_BASE_URL", extra="deepgram"),
    AdapterInfo("local", ProviderKind.LLM, "rspp.providers.offline._responder:LocalResponderLLM",
                "offline deterministic stand-in LLM", defaults={"token_delay_ms": 2.0}),
    AdapterInfo("local-responder", ProviderKind.LLM,
                "rspp.providers.offline._responder:LocalResponderLLM",
                "offline deterministic stand-in LLM (same as `local`)",
                defaults={"token_delay_ms": 2.0}),
    AdapterInfo("openai", ProviderKind.LLM, "rspp.providers.remote._openai_chat:OpenAIChatLLM",
                "OpenAI chat completions (SSE); any OpenAI-compatible server via base_url "
                "(Ollama, vLLM, llama.cpp)",
                key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL", extra="openai"),
    AdapterInfo("openai-completions", ProviderKind.LLM,
                "rspp.providers.remote._openai_completions:OpenAICompletionsLLM",
                "OpenAI-compatible (legacy) completions (SSE; vLLM, llama.cpp, TGI); "
                "`batching` shares requests across sessions (F-051)",
                key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL", extra="openai"),
    AdapterInfo("anthropic", ProviderKind.LLM, "rspp.providers.remote._anthropic:AnthropicLLM",
                "Anthropic Messages API (SSE)",
                key_env="ANTHROPIC_API_KEY", base_url_env="ANTHROPIC_BASE_URL",
                extra="anthropic"),
    AdapterInfo("espeak", ProviderKind.TTS, "rspp.providers.offline._espeak:EspeakTTS",
                "offline TTS (espeak-ng ships in the wheel)", extra="speech",
                defaults={"words_per_minute": 175}),
    AdapterInfo("openai-tts", ProviderKind.TTS, "rspp.providers.remote._openai_tts:OpenAITTS",
                "OpenAI speech (streamed 24 kHz PCM)",
                key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL", extra="openai"),
    AdapterInfo("elevenlabs", ProviderKind.TTS, "rspp.providers.remote._elevenlabs:ElevenLabsTTS",
                "ElevenLabs stream-input TTS over WebSocket",
                key_env="ELEVENLABS_API_KEY", base_url_env="ELEVENLABS_BASE_URL",
                extra="elevenlabs"),
)

_BY_NAME = {a.name: a for a in ADAPTERS}
#: constructor parameters that are process objects, never spec options
_NOT_OPTIONS = frozenset({"self", "kwargs", "provider_id", "clock", "metrics", "client",
                          "batcher"})

#: kind -> adapter name -> "module:Class" (imported lazily)
ADAPTER_TYPES: dict[ProviderKind, dict[str, str]] = {
    kind: {a.name: a.target for a in ADAPTERS if a.kind is kind} for kind in ProviderKind
}


def adapter_info(name: str) -> AdapterInfo | None:
    """The adapter called ``name`` (any kind), or ``None``."""
    return _BY_NAME.get(name)


def _names(kind: ProviderKind) -> list[str]:
    return sorted(ADAPTER_TYPES[kind])


def _unknown_name(kind: ProviderKind, name: object, path: str) -> PolicyError:
    known = _names(kind)
    close = difflib.get_close_matches(str(name), known, 1) if isinstance(name, str) else []
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    other = _BY_NAME.get(name) if isinstance(name, str) else None
    wrong = f" ({name!r} is a {other.kind.value} adapter)" if other is not None else ""
    return PolicyError(f"{path}.type={name!r}: unknown {kind.value} adapter{wrong}{guess}; "
                       f"use one of {known}")


def _kind(kind: ProviderKind | str, path: str) -> ProviderKind:
    try:
        return ProviderKind(kind)
    except ValueError:
        raise PolicyError(
            f"{path}: kind={kind!r} is not a provider kind; use one of "
            f"{[k.value for k in ProviderKind]}"
        ) from None


def create_provider(
    kind: ProviderKind | str,
    config: Mapping[str, object],
    *,
    provider_id: str | None = None,
    path: str = "providers",
    env: Mapping[str, str] | None = None,
    http_pool: HttpClientPool | None = None,
    batcher: ProviderBatcher | None = None,
    **runtime: object,
) -> Provider:
    """Instantiate the adapter ``config["type"]`` of ``kind`` with the other keys.

    ``runtime`` passes process objects (``clock``, ``metrics``) that never come
    from configuration; ``env`` (default ``os.environ``) supplies base URLs and
    API keys (module docstring). Errors name ``path`` and list the valid choices.
    ``http_pool`` (a runtime's, F-105): an HTTP adapter gets the shared client of its
    endpoint instead of building its own. ``batcher`` (a runtime's, F-051): an adapter
    configured with ``batching`` collects its calls in it with the other sessions'.
    """
    kind = _kind(kind, path)
    type_name = config.get("type")
    info = _BY_NAME.get(type_name) if isinstance(type_name, str) else None
    if info is None or info.kind is not kind:
        raise _unknown_name(kind, type_name, path)
    cls = info.load()
    params = {**info.defaults, **{k: v for k, v in config.items() if k != "type"}}
    where = f"{path} ({info.name})"
    _check_options(cls, info, params, path)
    _check_option_types(cls, params, where)
    cls.check_config(params, where)
    _apply_environment(info, params, os.environ if env is None else env, where)
    if http_pool is not None:
        _share_client(cls, params, http_pool)
    if (batcher is not None and params.get("batching") is not None
            and "batcher" in _init_params(cls)):
        params["batcher"] = batcher
    factory: Callable[..., Provider] = cls
    return factory(provider_id or info.name, **params, **runtime)


def _share_client(cls: type[Provider], params: dict[str, object],
                  pool: HttpClientPool) -> None:
    """Give an adapter that takes an httpx ``client`` its endpoint's shared one."""
    accepted = _init_params(cls)
    if "client" not in accepted or "client" in params:
        return
    url = params.get("base_url")
    if url is None:  # the adapter's default endpoint (a class default or a parameter's)
        url = getattr(cls, "default_base_url", None)
        if url is None and "base_url" in accepted:
            url = accepted["base_url"].default
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        client = pool.client_for(url)
        if client is not None:
            params["client"] = client


def _apply_environment(
    info: AdapterInfo, params: dict[str, object], env: Mapping[str, str], where: str
) -> None:
    """Fill ``base_url``/``api_key`` from the environment and check the key is there."""
    own_endpoint = params.get("base_url") is None
    if info.base_url_env and own_endpoint and env.get(info.base_url_env):
        params["base_url"] = env[info.base_url_env]
    key = params.get("api_key")
    # The vendor's standard key variable goes only to the vendor's endpoint (or the one its
    # *_BASE_URL names): a spec's own base_url (a local server) gets an explicit api_key only.
    if key is None and info.key_env and own_endpoint:
        if env.get(info.key_env, "").strip():
            params["api_key"] = f"env://{info.key_env}"
        else:
            raise SecretConfigError(
                f"{where}: no API key: environment variable {info.key_env} is not set; "
                f"export {info.key_env}=... or set api_key: env://NAME in the provider config"
            )
        return
    if isinstance(key, str) and key.startswith("env://"):
        var = key[len("env://"):]
        if not env.get(var, "").strip():
            raise SecretConfigError(
                f"{where}: api_key: environment variable {var} is not set; "
                f"export {var}=... before starting RSPP"
            )
    elif isinstance(key, str):
        SecretRef(key, field=f"{where}: api_key").resolve()  # file:// must be readable


def _init_params(cls: type[Provider]) -> dict[str, inspect.Parameter]:
    """The constructor parameters of ``cls`` and of the bases its ``**kwargs`` reach (an
    adapter that adds options to a base's passes the rest on): the subclass's first."""
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, Provider)) or \
                "__init__" not in vars(klass):
            continue
        own = inspect.signature(klass.__init__).parameters
        for name, param in own.items():
            params.setdefault(name, param)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
            break
    return params


def _accepted(cls: type[Provider]) -> set[str]:
    return set(_init_params(cls)) | set(inspect.signature(Provider.__init__).parameters)


def _check_options(
    cls: type[Provider], info: AdapterInfo, params: Mapping[str, object], path: str
) -> None:
    accepted = _accepted(cls)
    unknown = sorted(set(params) - accepted - {"self", "kwargs"})
    if unknown:
        valid = sorted(accepted - _NOT_OPTIONS)
        close = difflib.get_close_matches(unknown[0], valid, 1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        raise PolicyError(
            f"{path}: unknown option(s) {unknown} for {info.kind.value} adapter "
            f"{info.name!r}{guess}; valid options: {valid}"
        )


def _hints(cls: type[Provider]) -> dict[str, object]:
    hints: dict[str, object] = {}
    for klass in reversed(cls.__mro__):  # a subclass's annotation wins
        if isinstance(klass, type) and issubclass(klass, Provider) and "__init__" in vars(klass):
            try:
                hints.update(typing.get_type_hints(klass.__init__))
            except (NameError, TypeError):  # unresolvable annotation: the adapter checks itself
                continue
    return hints


def _check_option_types(cls: type[Provider], params: Mapping[str, object], where: str) -> None:
    """Refuse a scalar option of the wrong type up front (``base_url: 3`` used to crash
    inside the adapter with an AttributeError); the error names the option."""
    hints = _hints(cls)
    for name, value in params.items():
        hint = _scalar(hints.get(name))
        if value is None and hint is not None and _optional(hints.get(name)):
            continue
        if hint not in (str, int, float, bool):
            continue
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        if hint is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise PolicyError(
                f"{where}: option {name}={value!r} must be {hint.__name__}, "
                f"got {type(value).__name__}"
            )


_SCALARS = (str, int, float, bool)


def _optional(hint: object) -> bool:
    return type(None) in typing.get_args(hint)


def _scalar(hint: object) -> object:
    """``X`` for a scalar hint ``X`` or ``X | None``; the hint unchanged otherwise."""
    if hint in _SCALARS:
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1 and args[0] in _SCALARS and _optional(hint):
        return args[0]
    return hint


def _type_text(hint: object) -> str:
    scalar = _scalar(hint)
    if isinstance(scalar, type):
        return scalar.__name__
    return "secret reference (env://NAME or file://PATH)" if hint is not None else "any"


class ProviderCatalog:
    """Adapter names and option checks for ``rspp lint`` (an injected spec catalog)."""

    def adapter_names(self, modality: str) -> tuple[str, ...]:
        """Known adapter names of ``modality`` (``stt``/``llm``/``tts``), sorted."""
        return tuple(_names(ProviderKind(modality)))

    def problems(
        self, modality: str, name: str, config: Mapping[str, object]
    ) -> list[tuple[str, str, str]]:
        """``(config key or "", message, hint)`` for an unknown name, option or option type.

        Nothing is constructed and no environment is read (lint runs anywhere).
        """
        kind = ProviderKind(modality)
        info = _BY_NAME.get(name)
        if info is None or info.kind is not kind:
            known = ", ".join(_names(kind))
            close = difflib.get_close_matches(name, _names(kind), 1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            other = f" ({name!r} is a {info.kind.value} adapter)" if info is not None else ""
            return [("", f"unknown {modality} adapter {name!r}{other}",
                     f"{guess}use one of: {known}")]
        try:  # circuit/retry tune the invocation policy (F-057, F-059), not the adapter
            policy_from_config(("x",), 1, config, path="config")
        except PolicyError as exc:
            key = next((k for k in POLICY_CONFIG_KEYS if f"config.{k}" in str(exc)), "")
            text = str(exc)
            return [(key, text.removeprefix(f"config.{key}: ").removeprefix("config."),
                     "circuit: error_rate_threshold, window, min_calls, cooldown_ms, "
                     "half_open_successes; retry: max_retries, min_attempt_ms, initial_ms, "
                     "multiplier, max_ms, respect_retry_after; price: a number >= 0; "
                     "cost_cap: per_turn, per_session")]
        try:
            cls = info.load()
            params = {k: v for k, v in config.items()
                      if k != "adapter" and k not in POLICY_CONFIG_KEYS}
            _check_options(cls, info, params, "config")
            _check_option_types(cls, params, "config")
        except PolicyError as exc:
            named = str(exc).split("; valid options:")[0]  # not the list of valid ones
            bad = next((k for k in config if f"{k}=" in named or f"'{k}'" in named), "")
            return [(bad, str(exc).removeprefix("config: "),
                     f"valid options of {info.name!r}: {', '.join(info.options())}")]
        try:
            cls.check_config(params, "config")
        except PolicyError as exc:
            text = str(exc).removeprefix("config: ")
            key = next((k for k in config if text.startswith((f"{k}.", f"{k}="))), "")
            return [(key, text, f"{key}: {info.options().get(key, 'see rspp docs')}")]
        return []


#: The catalog ``rspp lint`` and the runner hand to the spec compiler.
PROVIDER_CATALOG = ProviderCatalog()
