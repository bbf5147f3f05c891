"""Node services travel with their session: no process-wide registry (DESIGN section 2).

Two sessions of the same graph run side by side in one process, each built with its
own :class:`NodeServices` (a different LLM provider); each ``llm`` node reads its
session's services through its context and calls only its own provider.
"""

from __future__ import annotations

import asyncio

import pytest

from rspp.kernel import Event, GraphBuilder, RuntimeGraph, SessionActor
from rspp.nodes import NodeServices, default_services, services_of
from rspp.providers.offline import LocalResponderLLM

pytestmark = pytest.mark.integration


def _graph() -> RuntimeGraph:
    return (GraphBuilder("services").node("llm", "llm")
            .edge("input.text", "llm.text").edge("llm.text", "output.text").build())


async def test_two_sessions_in_one_process_each_see_their_own_services() -> None:
    import rspp.nodes  # noqa: F401  (registers the built-in node types)

    graph = _graph()
    ended = {"a": asyncio.Event(), "b": asyncio.Event()}
    sessions: dict[str, SessionActor] = {}
    services: dict[str, NodeServices] = {}
    for name in ("a", "b"):
        services[name] = NodeServices(
            providers={f"llm-{name}": LocalResponderLLM(f"llm-{name}", token_delay_ms=1)},
            chains={"llm": (f"llm-{name}",)}, session_id=f"s-{name}")

        def sink(port: str, ev: Event, name: str = name) -> None:
            if (ev.attrs or {}).get("eos"):
                ended[name].set()

        sessions[name] = SessionActor(graph, session_id=f"s-{name}",
                                      output_sink=sink, services=services[name])
    for name, session in sessions.items():
        ctx = session.hosts["llm"].node.ctx
        assert ctx.services is services[name]
        assert services_of(ctx) is services[name]
    async with sessions["a"], sessions["b"]:
        for session in sessions.values():
            session.push(Event("text", "hello there", final=True, turn_id="t1"), "text")
        await asyncio.wait_for(asyncio.gather(ended["a"].wait(), ended["b"].wait()), 30)
    used = {name: [row["provider_id"] for row in svc.invocation_outcomes("t1")]
            for name, svc in services.items()}
    assert used == {"a": ["llm-a"], "b": ["llm-b"]}
    assert sessions["a"].hosts["llm"].node.replies
    assert sessions["b"].hosts["llm"].node.replies


async def test_a_session_built_without_services_gives_nodes_the_offline_defaults() -> None:
    import rspp.nodes  # noqa: F401

    session = SessionActor(_graph(), session_id="bare")
    ctx = session.hosts["llm"].node.ctx
    assert ctx.services is None
    assert services_of(ctx) is default_services()


async def test_services_of_a_foreign_type_are_refused_with_the_session_named() -> None:
    import rspp.nodes  # noqa: F401

    session = SessionActor(_graph(), session_id="odd", services={"llm": "x"})
    with pytest.raises(TypeError, match="session 'odd' was built with services of type dict"):
        services_of(session.hosts["llm"].node.ctx)
