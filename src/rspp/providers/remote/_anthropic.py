"""Anthropic Messages API streaming.

Wire format: ``POST {base_url}/v1/messages`` with ``stream: true``, headers
``x-api-key`` and ``anthropic-version``. SSE events: ``message_start``,
``content_block_start``, ``content_block_delta`` (``text_delta``),
``content_block_stop``, ``message_delta``, ``message_stop``, ``ping`` and
``error`` (``{"type": "error", "error": {"type": "overloaded_error", ...}}``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._types import LLMRequest
from rspp.providers.remote._common import (
    error_from_response,
    iter_sse,
    key_header,
    vendor_outcome,
)
from rspp.providers.remote._http_llm import HttpLLMProvider

__all__ = ["AnthropicLLM"]

ANTHROPIC_VERSION = "2023-06-01"


class AnthropicLLM(HttpLLMProvider):
    default_provider_id = "anthropic"
    default_model = "claude-3-5-haiku-latest"
    default_base_url = "https://api.anthropic.com"

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "content-type": "application/json",
                   **key_header(self._key, "x-api-key")}
        system = "\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, object] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            body["system"] = system
        async with self._client.stream(
            "POST", f"{self.base_url}/v1/messages", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise await error_from_response(response, self.provider_id)
            stopped = False
            async for event, data in iter_sse(response.aiter_lines()):
                if stopped:  # read the body to its end: the connection is kept (F-105)
                    continue
                payload = json.loads(data)
                kind = event or payload.get("type")
                if kind == "content_block_delta":
                    delta = payload.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield delta["text"]
                elif kind == "message_delta":
                    if (payload.get("delta") or {}).get("stop_reason") == "refusal":
                        raise ProviderCallError(
                            "the model refused to answer",
                            outcome=Outcome.SAFETY_BLOCK,
                            provider=self.provider_id,
                            code="refusal",
                        )
                elif kind == "message_stop":
                    stopped = True
                elif kind == "error":
                    err = payload.get("error") or {}
                    raise ProviderCallError(
                        str(err.get("message", "stream error"))[:200],
                        outcome=vendor_outcome(err.get("type")),
                        provider=self.provider_id,
                        code=str(err.get("type") or "error"),
                    )
            if not stopped:
                raise ProviderCallError(
                    "stream ended before message_stop",
                    outcome=Outcome.DISCONNECTED,
                    provider=self.provider_id,
                    code="incomplete_stream",
                )
