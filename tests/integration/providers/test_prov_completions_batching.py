"""The Completions adapter and dynamic batching (F-051) against the OpenAI-compatible fake.

Real HTTP on loopback: :class:`~rspp.testing.fakes.FakeOpenAI` answers ``/v1/completions``
with a string or an array of prompts (choices by index, interleaved) and records how many
prompts each request carried. Every batch here is closed by its size or by a call's
budget, never by a race against ``max_wait_ms`` (that is a minute).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from rspp.providers import (
    PROVIDER_CATALOG,
    BatchingPolicy,
    ChatMessage,
    LLMRequest,
    Outcome,
    PolicyError,
    ProviderBatcher,
    ProviderCallError,
    create_provider,
)
from rspp.providers.remote import OpenAICompletionsLLM, completion_prompt
from rspp.testing.fakes import FakeOpenAI, Fault

pytestmark = pytest.mark.integration

MINUTE = {"max_batch_size": 8, "max_wait_ms": 60_000}


def ask(text: str) -> LLMRequest:
    return LLMRequest(messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)))


async def reply(llm: OpenAICompletionsLLM, text: str, timeout_ms: int = 600_000) -> str:
    return "".join([piece async for piece in llm.stream(ask(text), timeout_ms=timeout_ms)])


@pytest.fixture
async def batcher() -> AsyncIterator[ProviderBatcher]:
    b = ProviderBatcher()
    yield b
    await b.aclose()


_BUILT: list[OpenAICompletionsLLM] = []


@pytest.fixture(autouse=True)
async def _close_adapters() -> AsyncIterator[None]:
    yield
    while _BUILT:
        await _BUILT.pop().aclose()


def adapter(url: str, key: str, batcher: ProviderBatcher | None = None,
            **batching: int) -> OpenAICompletionsLLM:
    """An adapter (closed after the test): one per session that would use it."""
    llm = OpenAICompletionsLLM(base_url=url, api_key=key, model="fake",
                               batching=batching or None, batcher=batcher)
    _BUILT.append(llm)
    return llm


def test_the_conversation_becomes_one_prompt_deterministically() -> None:
    request = ask("what time is it")
    assert completion_prompt(request.messages) == (
        "System: Be brief.\n\nUser: what time is it\n\nAssistant:")
    assert completion_prompt(request.messages) == completion_prompt(ask("what time is it")
                                                                    .messages)


async def test_without_batching_each_call_is_one_request_with_a_string_prompt(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str
) -> None:
    fake, url = openai_fake
    llm = adapter(url, api_key_ref)
    answers = await asyncio.gather(reply(llm, "one"), reply(llm, "two"))
    assert answers == ["You asked: one. This is a scripted fake reply.",
                       "You asked: two. This is a scripted fake reply."]
    assert fake.completion_batches == [1, 1]
    body = fake.requests[0].body
    assert isinstance(body, dict) and isinstance(body["prompt"], str)
    assert body["stream"] is True and body["model"] == "fake" and body["stop"] == ["\nUser:"]


async def test_concurrent_calls_share_one_request_and_get_their_own_answers(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str, batcher: ProviderBatcher
) -> None:
    fake, url = openai_fake
    # four sessions' adapters (one each), one runtime batcher: the fourth call fills the batch
    llms = [adapter(url, api_key_ref, batcher, max_batch_size=4, max_wait_ms=60_000)
            for _ in range(4)]
    answers = await asyncio.gather(*(reply(llm, f"q{i}") for i, llm in enumerate(llms)))
    assert answers == [f"You asked: q{i}. This is a scripted fake reply." for i in range(4)]
    assert fake.completion_batches == [4]
    body = fake.requests[0].body
    assert isinstance(body, dict) and isinstance(body["prompt"], list)
    assert [p.rsplit("User: ", 1)[1] for p in body["prompt"]] == [
        f"q{i}\n\nAssistant:" for i in range(4)]
    assert batcher.stats.requests == {"openai-completions": 1}
    assert batcher.stats.calls == {"openai-completions": 4}
    assert batcher.stats.sizes["openai-completions"].count == 1


async def test_a_call_with_a_tight_budget_flushes_its_batch_early(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str, batcher: ProviderBatcher
) -> None:
    fake, url = openai_fake
    patient, tight = (adapter(url, api_key_ref, batcher, **MINUTE) for _ in range(2))
    # the tight call may wait 10% of its 3 s; the patient one alone would wait a minute
    # (its 10 minutes' share): the tight call sends both, well within its own budget
    answers = await asyncio.gather(reply(patient, "patient"),
                                   reply(tight, "tight", timeout_ms=3000))
    assert answers[1] == "You asked: tight. This is a scripted fake reply."
    assert answers[0] == "You asked: patient. This is a scripted fake reply."
    assert fake.completion_batches == [2]
    (wait,) = batcher.stats.waits.values()
    assert wait.count == 2


async def test_a_cancelled_call_leaves_without_disturbing_the_others(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str, batcher: ProviderBatcher
) -> None:
    fake, url = openai_fake
    fake.token_delay_s = 0.01
    llms = [adapter(url, api_key_ref, batcher, max_batch_size=3, max_wait_ms=60_000)
            for _ in range(4)]
    # a call that leaves before its batch is sent is not in it
    gone = asyncio.ensure_future(reply(llms[3], "gone"))
    while not batcher._lanes:  # noqa: ASYNC110 (the batcher's own state: it queued the call)
        await asyncio.sleep(0)
    gone.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await gone

    async def cancelled_after_first_piece() -> str:
        stream = llms[0].stream(ask("cancel me"), timeout_ms=600_000)
        async with contextlib.aclosing(stream):
            async for piece in stream:
                return piece
        return ""

    first, *rest = await asyncio.gather(cancelled_after_first_piece(), reply(llms[1], "b"),
                                        reply(llms[2], "c"))
    assert first == "You"
    assert rest == ["You asked: b. This is a scripted fake reply.",
                    "You asked: c. This is a scripted fake reply."]
    assert fake.completion_batches == [3]


async def test_a_choice_the_provider_blocks_fails_only_its_own_call(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str, batcher: ProviderBatcher
) -> None:
    fake, url = openai_fake
    fake.blocked_words.add("forbidden")
    llms = [adapter(url, api_key_ref, batcher, max_batch_size=2, max_wait_ms=60_000)
            for _ in range(2)]
    results = await asyncio.gather(reply(llms[0], "forbidden words"), reply(llms[1], "fine"),
                                   return_exceptions=True)
    assert isinstance(results[0], ProviderCallError)
    assert results[0].outcome is Outcome.SAFETY_BLOCK
    assert results[1] == "You asked: fine. This is a scripted fake reply."
    assert fake.completion_batches == [2]


@pytest.mark.parametrize(("fault", "outcome"), [
    (Fault("status", status=503), Outcome.OVERLOAD),
    (Fault("disconnect", after_items=2), Outcome.DISCONNECTED),
    (Fault("stream_error", after_items=1, error_type="server_error"), Outcome.INTERNAL),
])
async def test_a_failed_request_fails_every_call_it_carried(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str, batcher: ProviderBatcher,
    fault: Fault, outcome: Outcome
) -> None:
    fake, url = openai_fake
    fake.faults.push(fault)
    llms = [adapter(url, api_key_ref, batcher, max_batch_size=2, max_wait_ms=60_000)
            for _ in range(2)]
    results = await asyncio.gather(*(reply(llm, f"q{i}") for i, llm in enumerate(llms)),
                                   return_exceptions=True)
    assert [r.outcome for r in results if isinstance(r, ProviderCallError)] == [outcome] * 2
    assert len(fake.requests) == 1


async def test_an_adapter_without_a_runtime_batcher_batches_its_own_calls(
    openai_fake: tuple[FakeOpenAI, str], api_key_ref: str
) -> None:
    fake, url = openai_fake
    llm = adapter(url, api_key_ref, None, max_batch_size=2, max_wait_ms=60_000)
    assert llm.batcher is not None
    answers = await asyncio.gather(reply(llm, "x"), reply(llm, "y"))
    assert answers == ["You asked: x. This is a scripted fake reply.",
                       "You asked: y. This is a scripted fake reply."]
    assert fake.completion_batches == [2]


def test_the_runtime_batcher_reaches_an_adapter_configured_with_batching() -> None:
    b = ProviderBatcher()
    cfg = {"type": "openai-completions", "base_url": "http://127.0.0.1:9/v1",
           "api_key": "env://HOME"}
    on = create_provider("llm", {**cfg, "batching": {"max_batch_size": 4}}, batcher=b)
    off = create_provider("llm", cfg, batcher=b)
    assert isinstance(on, OpenAICompletionsLLM) and on.batcher is b
    assert on.batching == BatchingPolicy(max_batch_size=4, max_wait_ms=10.0)
    assert isinstance(off, OpenAICompletionsLLM) and off.batcher is None


@pytest.mark.parametrize(("batching", "field"), [
    ({"max_batch_size": 0}, "batching.max_batch_size=0"),
    ({"max_wait_ms": -1}, "batching.max_wait_ms=-1"),
    ({"max_wait": 5}, "batching.max_wait"),
    ([8], "batching=[8]"),
])
def test_a_bad_batching_value_is_one_error_naming_the_field(
    batching: object, field: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        BatchingPolicy.from_config(batching)
    assert str(caught.value).startswith(field), caught.value
    (problem,) = PROVIDER_CATALOG.problems("llm", "openai-completions", {"batching": batching})
    key, message, _hint = problem
    assert key == "batching" and message.startswith(field), problem
    # an adapter that cannot batch does not take the option at all
    (problem,) = PROVIDER_CATALOG.problems("llm", "openai", {"batching": {"max_batch_size": 2}})
    assert problem[0] == "batching" and "unknown option" in problem[1], problem
