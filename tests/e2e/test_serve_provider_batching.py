"""Dynamic batching of the sessions' LLM calls in one ``rspp serve`` (F-051).

``rspp serve`` with three text-chat pipelines on the ``openai-completions`` adapter, all
against the OpenAI-compatible fake (:class:`~rspp.testing.fakes.FakeProviderServers`),
which records how many prompts each ``/v1/completions`` request carried:

* ``batched-chat``: ``batching: {max_batch_size: 4, max_wait_ms: 30000}``. Four sessions
  ask at once: the fake sees one request with four prompts (the fourth call fills the
  batch; nothing waits for the 30 s), and each session gets the answer to its own question.
* ``tight-chat``: the same batching but an 8 s turn budget. Its one session asks alone: a
  call waits at most a tenth of its remaining budget, so the request leaves long before
  the 30 s ``max_wait_ms`` (held that long, the turn would have aborted on its budget): the
  turn commits with its answer, a batch of one.
* ``unbatched-chat``: no ``batching``. Three sessions ask at once: three requests, each
  with one (string) prompt.

Then four ``batched-chat`` sessions ask at once again and one is interrupted while the
batched reply streams: its turn aborts, the three others get their whole answers from the
same request. ``/metrics`` shows the batch sizes (three batched requests carrying nine
calls) and the calls' waits. A bad ``batching`` value is one ``rspp lint`` line naming the field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.transports import ReplyText, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

    from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

KEY = "batching-admin-key"

_SPEC = """name: {name}
version: 1.0.0
profile: simple/v1
budgets: {{turn_ms: {turn_ms}, node_ms: {turn_ms}, path_ms: {turn_ms}, edge_ms: {turn_ms},
          provider_timeout_ms: {turn_ms}}}
providers:
  llm:
    primary: openai-completions
    timeout_ms: {turn_ms}
    config: {{model: fake-llama, retry: {{max_retries: 0}}{batching}}}
nodes:
  - {{id: llm, type: llm}}
edges:
  - {{from: input.text, to: llm.text}}
  - {{from: llm.text, to: output.text}}
"""
BATCHING = ", batching: {max_batch_size: 4, max_wait_ms: 30000}"


def spec(name: str, *, turn_ms: int = 600_000, batching: str = BATCHING) -> str:
    return _SPEC.format(name=name, turn_ms=turn_ms, batching=batching)


async def _sessions(url: str, pipeline: str, n: int) -> list[LiveClient]:
    clients: list[LiveClient] = []
    for _ in range(n):
        target = await route_session(url, tenant_id="acme", api_key=KEY,
                                     pipeline_name=pipeline)
        clients.append(await LiveClient.connect(target.url, token=target.token))
    return clients


async def _end(clients: list[LiveClient]) -> None:
    for c in clients:
        await c.end()
        await c.close()


async def _ask_at_once(url: str, pipeline: str, questions: list[str],
                       text_turn: Callable[..., Any]) -> list[str]:
    """One session per question, connected first, then all asking at once."""
    clients = await _sessions(url, pipeline, len(questions))
    try:
        return list(await asyncio.gather(*(text_turn(c, q) for c, q in zip(
            clients, questions, strict=True))))
    finally:
        await _end(clients)


async def _one_interrupted(url: str, text_turn: Callable[..., Any]
                           ) -> tuple[list[str], list[str]]:
    """Four ``batched-chat`` sessions ask at once (one batch); the first is interrupted
    once its reply started: its turn states, and the others' replies."""
    a, *rest = clients = await _sessions(url, "batched-chat", 4)
    try:
        await a.send_text("question a, interrupted")
        others = asyncio.gather(*(text_turn(c, f"question {x} goes on")
                                  for c, x in zip(rest, "bcd", strict=True)))
        states: list[str] = []
        async for ev in a.events():
            if isinstance(ev, ReplyText) and not states[1:]:
                await a.interrupt()  # the batched stream is still going (slow tokens)
                states.append("interrupted")
            if isinstance(ev, TurnEvent):
                states.append(ev.state)
                if ev.state == "close":
                    break
        return states, list(await others)
    finally:
        await _end(clients)


def _metric(text: str, name: str) -> float:
    m = re.search(rf'^{name}{{provider="openai-completions"}} (\S+)$', text, re.M)
    assert m is not None, f"{name} missing from /metrics"
    return float(m.group(1))


def test_sessions_of_one_runtime_share_batched_requests_within_their_budgets(
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    fake_providers: FakeProviderServers, text_turn: Callable[..., Any],
) -> None:
    first = tmp_path / "batched.yaml"
    first.write_text(spec("batched-chat"))
    srv = serve_process(str(first), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY).wait_ready()
    fake = fake_providers.openai
    auth = {"Authorization": f"Bearer {KEY}"}
    for name, text in (("tight-chat", spec("tight-chat", turn_ms=8000)),
                       ("unbatched-chat", spec("unbatched-chat", batching=""))):
        res = httpx.post(f"{srv.url}/v1/pipelines", headers=auth, timeout=30,
                         json={"spec": text, "filename": f"{name}.yaml"})
        assert res.status_code == 201, res.text

    async def scenario() -> tuple[list[str], list[int], list[str], list[int], list[str],
                                  list[int]]:
        batched = await _ask_at_once(srv.url, "batched-chat",
                                     [f"question {i} of four" for i in range(4)], text_turn)
        seen_batched = list(fake.completion_batches)
        tight = await _ask_at_once(srv.url, "tight-chat", ["a question in a hurry"], text_turn)
        seen_tight = fake.completion_batches[len(seen_batched):]
        alone = await _ask_at_once(srv.url, "unbatched-chat",
                                   [f"unbatched {i}" for i in range(3)], text_turn)
        seen_alone = fake.completion_batches[len(seen_batched) + len(seen_tight):]
        return batched, seen_batched, tight, seen_tight, alone, seen_alone

    batched, seen_batched, tight, seen_tight, alone, seen_alone = asyncio.run(
        asyncio.wait_for(scenario(), 240))
    unbatched = [r.body["prompt"] for r in fake.requests[-3:]]  # type: ignore[index]
    before = len(fake.completion_batches)
    fake.token_delay_s = 0.5  # a reply streams for seconds: the interrupt lands mid-stream
    states, goes_on = asyncio.run(asyncio.wait_for(_one_interrupted(srv.url, text_turn), 240))
    # four calls, one request of four prompts; each session its own answer
    assert seen_batched == [4], seen_batched
    for i, answer in enumerate(batched):  # the reply text as the client saw it
        assert answer.startswith(f"You asked: question {i} of four."), batched
        assert all(f"question {j} " not in answer for j in range(4) if j != i), batched
    prompts = fake.requests[0].body["prompt"]  # type: ignore[index]
    assert isinstance(prompts, list) and len(prompts) == 4
    # the tight budget flushed its batch early: the turn committed with its answer
    assert seen_tight == [1]
    assert tight[0].startswith("You asked: a question in a hurry."), tight
    # batching off: one request per call, a string prompt each
    assert seen_alone == [1, 1, 1]
    assert [a.startswith(f"You asked: unbatched {i}.") for i, a in enumerate(alone)] == \
        [True] * 3, alone
    assert [type(p) for p in unbatched] == [str] * 3, unbatched

    # an interrupted session's call leaves its batch: its turn aborts, the three others
    # sharing the request get their whole answers
    assert states[:2] == ["open", "interrupted"] and states[-2:] == ["abort", "close"], states
    assert fake.completion_batches[before:] == [4]
    for x, answer in zip("bcd", goes_on, strict=True):
        assert answer.startswith(f"You asked: question {x} goes on. This is a scripted fake "
                                 "reply."), goes_on

    metrics = httpx.get(f"{srv.url}/metrics", headers=auth, timeout=30).text
    assert _metric(metrics, "rspp_provider_batch_size_count") == 3
    assert _metric(metrics, "rspp_provider_batch_size_sum") == 9
    assert _metric(metrics, "rspp_provider_batch_wait_ms_count") == 9


def test_a_bad_batching_value_is_one_lint_line_naming_the_field(
    rspp_cli: RsppCli, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec("bad-chat", batching=", batching: {max_batch_size: 0}"))
    res = rspp_cli("lint", str(bad))
    assert res.returncode == 1
    (line,) = [ln for ln in res.stdout.splitlines() if "batching" in ln and ": " in ln
               and not ln.strip().startswith("hint")]
    assert "providers.llm.config.batching: batching.max_batch_size=0: must be an integer" \
        in line, res.stdout
    unsupported = tmp_path / "unsupported.yaml"
    unsupported.write_text(spec("bad-chat").replace("openai-completions", "openai"))
    res = rspp_cli("lint", str(unsupported))
    assert res.returncode == 1
    assert "providers.llm.config.batching: unknown option(s) ['batching']" in res.stdout
