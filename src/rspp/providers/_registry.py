"""Build adapters from configuration by kind and type name (F-055).

Pipeline specs and policies name providers as ``{"type": "openai", "model": ..,
"api_key": "env://OPENAI_API_KEY"}``; :func:`create_provider` turns such a
mapping into an adapter. Swapping the ``type`` swaps the adapter without
touching the nodes that drive it.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Mapping

from rspp.providers._base import Provider
from rspp.providers._policy import PolicyError
from rspp.providers._types import ProviderKind

__all__ = ["ADAPTER_TYPES", "create_provider"]

#: kind -> type name -> "module:Class" (imported lazily)
ADAPTER_TYPES: dict[ProviderKind, dict[str, str]] = {
    ProviderKind.STT: {
        "pocketsphinx": "rspp.providers.offline._pocketsphinx:PocketsphinxSTT",
        "deepgram": "rspp.providers.remote._deepgram:DeepgramSTT",
    },
    ProviderKind.LLM: {
        "local-responder": "rspp.providers.offline._responder:LocalResponderLLM",
        "openai": "rspp.providers.remote._openai_chat:OpenAIChatLLM",
        "anthropic": "rspp.providers.remote._anthropic:AnthropicLLM",
    },
    ProviderKind.TTS: {
        "espeak": "rspp.providers.offline._espeak:EspeakTTS",
        "elevenlabs": "rspp.providers.remote._elevenlabs:ElevenLabsTTS",
        "openai-tts": "rspp.providers.remote._openai_tts:OpenAITTS",
    },
}


def create_provider(
    kind: ProviderKind | str,
    config: Mapping[str, object],
    *,
    provider_id: str | None = None,
    path: str = "providers",
    **runtime: object,
) -> Provider:
    """Instantiate the adapter ``config["type"]`` of ``kind`` with the other keys.

    ``runtime`` passes process objects (``clock``, ``metrics``) that never come
    from configuration. Errors name ``path`` and list the valid choices.
    """
    try:
        kind = ProviderKind(kind)
    except ValueError:
        raise PolicyError(
            f"{path}: kind={kind!r} is not a provider kind; use one of "
            f"{[k.value for k in ProviderKind]}"
        ) from None
    type_name = config.get("type")
    choices = ADAPTER_TYPES[kind]
    if not isinstance(type_name, str) or type_name not in choices:
        raise PolicyError(
            f"{path}.type={type_name!r}: unknown {kind.value} adapter; use one of {sorted(choices)}"
        )
    module_name, _, class_name = choices[type_name].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    params = {k: v for k, v in config.items() if k != "type"}
    accepted = set(inspect.signature(cls.__init__).parameters) | set(
        inspect.signature(Provider.__init__).parameters
    )
    unknown = sorted(set(params) - accepted - {"self", "kwargs"})
    if unknown:
        raise PolicyError(
            f"{path}: unknown option(s) {unknown} for {kind.value} adapter {type_name!r}; "
            f"valid options: {sorted(accepted - {'self', 'kwargs', 'provider_id'})}"
        )
    _check_option_types(cls, params, f"{path} ({kind.value} adapter {type_name!r})")
    provider: Provider = cls(provider_id or type_name, **params, **runtime)
    return provider


def _check_option_types(cls: type[Provider], params: Mapping[str, object], where: str) -> None:
    """Refuse a scalar option of the wrong type up front (``base_url: 3`` used to crash
    inside the adapter with an AttributeError); the error names the option."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # unresolvable annotation: the adapter checks itself
        return
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
