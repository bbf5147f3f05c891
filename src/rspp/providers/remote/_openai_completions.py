"""OpenAI-compatible (legacy) Completions with SSE streaming and optional dynamic batching.

Wire format: ``POST {base_url}/completions`` with ``model``, ``prompt``, ``max_tokens``,
``temperature``, ``stop``, ``stream: true`` (and ``seed`` when the request has one). The
response is ``data: {"object": "text_completion", "choices": [{"index", "text",
"finish_reason"}, ...]}`` lines ended by ``data: [DONE]``; ``finish_reason`` is ``stop``,
``length`` or ``content_filter`` on a choice's last chunk. A stream that stops before
``[DONE]`` is ``disconnected``; an in-stream ``{"error": {...}}`` fails the call with the
vendor's type. vLLM, llama.cpp server and TGI's OpenAI-compatible servers speak it.

``prompt`` may be an array: the server answers each prompt as the choice of the same
``index`` (with ``n`` = 1), interleaving their chunks. With ``batching: {max_batch_size,
max_wait_ms}`` the adapter sends its calls through the runtime's
:class:`~rspp.providers.ProviderBatcher` (F-051): calls of the runtime's sessions with the
same endpoint, credentials, model and generation parameters share one request, and each
call reads its own choice. Without it every call is one request with a string prompt.

The conversation becomes one prompt deterministically (:func:`completion_prompt`): each
message on its own paragraph as ``System:``/``User:``/``Assistant:`` and its text, then
``Assistant:``; generation stops at the next ``User:`` line.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import ClassVar

import httpx

from rspp.providers._batching import Batch, BatchingPolicy, ProviderBatcher
from rspp.providers._invocation import ProviderInvocation
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._policy import PolicyError
from rspp.providers._types import ChatMessage, LLMRequest
from rspp.providers.remote._common import error_from_response, iter_openai_chunks, key_header
from rspp.providers.remote._http_llm import HttpLLMProvider

__all__ = ["OpenAICompletionsLLM", "completion_prompt"]

_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}
#: where a completion of the prompt format stops (the model starting the user's next line)
STOP = ("\nUser:",)


def completion_prompt(messages: Sequence[ChatMessage]) -> str:
    """The conversation as one completion prompt (same messages, same prompt)."""
    parts = [f"{_LABELS[m.role]}: {m.content.strip()}" for m in messages]
    return "\n\n".join([*parts, "Assistant:"])


class OpenAICompletionsLLM(HttpLLMProvider):
    """``/v1/completions`` streaming; ``batching`` shares requests across sessions."""

    default_provider_id = "openai-completions"
    default_model = "gpt-3.5-turbo-instruct"
    default_base_url = "https://api.openai.com/v1"
    option_notes: ClassVar[dict[str, str]] = {
        "batching": "mapping {max_batch_size: 1..256, max_wait_ms: 0..60000} (F-051)"}

    def __init__(
        self,
        provider_id: str | None = None,
        *,
        batching: Mapping[str, object] | None = None,
        batcher: ProviderBatcher | None = None,
        **kwargs: object,
    ) -> None:
        """``kwargs``: the options of :class:`HttpLLMProvider` (``model``, ``base_url``,
        ``api_key``, ``client``) and the runtime's ``clock``/``metrics``."""
        super().__init__(provider_id, **kwargs)  # type: ignore[arg-type]
        self.batching = (None if batching is None
                         else BatchingPolicy.from_config(batching, "batching"))
        #: a batcher passed in (the runtime's) is its owner's to close
        self._owns_batcher = batcher is None and self.batching is not None
        self.batcher = batcher if batcher is not None or self.batching is None \
            else ProviderBatcher()

    @classmethod
    def check_config(cls, params: Mapping[str, object], where: str) -> None:
        if params.get("batching") is not None:
            try:
                BatchingPolicy.from_config(params["batching"], "batching")
            except PolicyError as exc:
                raise PolicyError(f"{where}: {exc}") from None

    async def aclose(self) -> None:
        if self._owns_batcher and self.batcher is not None:
            await self.batcher.aclose()
        await super().aclose()

    # -- the request ----------------------------------------------------------
    def _body(self, request: LLMRequest, prompt: str | list[str]) -> dict[str, object]:
        body: dict[str, object] = {
            "model": request.model or self.model, "prompt": prompt,
            "max_tokens": request.max_tokens, "temperature": request.temperature,
            "stop": list(STOP), "stream": True,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        return body

    def _headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", **key_header(self._key, "Authorization", "Bearer")}

    async def _choices(
        self, response: httpx.Response
    ) -> AsyncIterator[tuple[int, str, str | None]]:
        """``(index, text, finish_reason)`` of every streamed choice, to ``[DONE]``."""
        async for chunk in iter_openai_chunks(response, self.provider_id):
            for choice in chunk.get("choices", ()):
                yield int(choice.get("index", 0)), str(choice.get("text") or ""), \
                    choice.get("finish_reason")

    def _blocked(self) -> ProviderCallError:
        return ProviderCallError("response blocked by the provider's content filter",
                                 outcome=Outcome.SAFETY_BLOCK, provider=self.provider_id,
                                 code="content_filter")

    # -- one call -------------------------------------------------------------
    async def _generate(
        self, request: LLMRequest, invocation: ProviderInvocation
    ) -> AsyncIterator[str]:
        prompt = completion_prompt(request.messages)
        pieces = (self._alone(request, prompt) if self.batcher is None or self.batching is None
                  else self._batched(request, prompt, invocation, self.batcher, self.batching))
        started = False
        async for piece in pieces:
            if not started:  # the reply follows "Assistant:": its leading space is not text
                piece = piece.lstrip()
                started = bool(piece)
            if piece:
                yield piece

    async def _alone(self, request: LLMRequest, prompt: str) -> AsyncIterator[str]:
        async with self._client.stream("POST", f"{self.base_url}/completions",
                                       json=self._body(request, prompt),
                                       headers=self._headers()) as response:
            if response.status_code != 200:
                raise await error_from_response(response, self.provider_id)
            async for index, text, finish in self._choices(response):
                if index != 0:
                    continue
                if text:
                    yield text
                if finish == "content_filter":
                    raise self._blocked()

    async def _batched(self, request: LLMRequest, prompt: str, invocation: ProviderInvocation,
                       batcher: ProviderBatcher, policy: BatchingPolicy) -> AsyncIterator[str]:
        member = batcher.submit(self._batch_key(request), (request, prompt),
                                provider_id=self.provider_id, policy=policy,
                                time_limit_ms=invocation.timeout_ms, send=self._send)
        try:
            async for piece in member.answers():
                yield piece
        finally:
            batcher.leave(member)

    def _batch_key(self, request: LLMRequest) -> tuple[object, ...]:
        """What calls must share to go in one request: endpoint, credentials (a digest,
        never the key), model and every generation parameter of the body."""
        auth = key_header(self._key, "Authorization", "Bearer").get("Authorization", "")
        return ("completions", self.base_url, hashlib.sha256(auth.encode()).hexdigest(),
                request.model or self.model, request.max_tokens, request.temperature,
                request.seed)

    async def _send(self, batch: Batch[tuple[LLMRequest, str]]) -> None:
        """One request for the batch's calls; each choice goes back to its call."""
        request = batch.inputs[0][0]
        prompts = [prompt for _, prompt in batch.inputs]
        async with self._client.stream("POST", f"{self.base_url}/completions",
                                       json=self._body(request, prompts),
                                       headers=self._headers()) as response:
            if response.status_code != 200:
                batch.fail_open(await error_from_response(response, self.provider_id))
                return
            async for index, text, finish in self._choices(response):
                if not batch.wanted(index):
                    continue
                if text:
                    batch.deliver(index, text)
                if finish == "content_filter":
                    batch.fail(index, self._blocked())
                elif finish is not None:
                    batch.finish(index)
