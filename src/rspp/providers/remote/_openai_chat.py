"""OpenAI-compatible chat completions with SSE streaming.

Works with OpenAI, vLLM, Ollama and llama.cpp server (``base_url`` ending in
``/v1``). Wire format: ``POST {base_url}/chat/completions`` with
``stream: true``; the response is ``data: {chat.completion.chunk}`` lines ended
by ``data: [DONE]``. A stream that stops before ``[DONE]`` is ``disconnected``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._types import LLMRequest
from rspp.providers.remote._common import error_from_response, iter_openai_chunks, key_header
from rspp.providers.remote._http_llm import HttpLLMProvider

__all__ = ["OpenAIChatLLM"]


class OpenAIChatLLM(HttpLLMProvider):
    default_provider_id = "openai"
    default_model = "gpt-4o-mini"
    default_base_url = "https://api.openai.com/v1"

    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        headers = {"Accept": "text/event-stream",
                   **key_header(self._key, "Authorization", "Bearer")}
        body: dict[str, object] = {
            "model": request.model or self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        async with self._client.stream(
            "POST", f"{self.base_url}/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                raise await error_from_response(response, self.provider_id)
            async for chunk in iter_openai_chunks(response, self.provider_id):
                for choice in chunk.get("choices", ()):
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        yield delta
                    if choice.get("finish_reason") == "content_filter":
                        raise ProviderCallError(
                            "response blocked by the provider's content filter",
                            outcome=Outcome.SAFETY_BLOCK,
                            provider=self.provider_id,
                            code="content_filter",
                        )
