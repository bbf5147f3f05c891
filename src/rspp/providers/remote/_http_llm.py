"""Shared shape of the HTTP streaming LLM adapters (one httpx client, a key, a model)."""

from __future__ import annotations

from typing import ClassVar

import httpx

from rspp.providers._base import LLMProvider
from rspp.providers._secrets import Secret, SecretRef
from rspp.providers._types import Capabilities, ProviderKind
from rspp.providers.remote._common import key_source

__all__ = ["HttpLLMProvider"]


class HttpLLMProvider(LLMProvider):
    """Base of the SSE chat adapters; a subclass sets its defaults and ``_generate``."""

    capabilities = Capabilities(kind=ProviderKind.LLM, streaming=True, languages=("*",))
    default_provider_id: ClassVar[str]
    default_model: ClassVar[str]
    default_base_url: ClassVar[str]

    def __init__(
        self,
        provider_id: str | None = None,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | Secret | SecretRef | None = None,
        client: httpx.AsyncClient | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(provider_id or self.default_provider_id, **kwargs)  # type: ignore[arg-type]
        self.model = model or self.default_model
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self._key = key_source(api_key)
        #: a client passed in (the runtime's shared pool, F-105) is its owner's to close
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()
