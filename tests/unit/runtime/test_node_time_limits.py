"""Which node ``process`` calls the host bounds with the node budget (F-045, F-046).

A provider-backed node waits on its providers, whose calls have their own timeouts,
retries and fallbacks within the turn budget: the profile's node budget must not cut
a slow provider off before its timeout and fallback act. A node budget the spec sets
on the node itself still applies; other async nodes keep the profile budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp import Event, Node
from rspp.kernel import NodeRegistry, RuntimeGraph
from rspp.spec import compile_spec, parse_spec_text

pytestmark = pytest.mark.unit

VOICE = (Path(__file__).resolve().parents[3] / "pipelines" / "examples"
         / "voice_assistant.yaml").read_text()


class SlowTap(Node):
    """An async node of the spec's own (no provider): the node budget bounds it."""

    inputs = ("audio",)
    outputs = ("audio",)
    port_types = {"audio": "audio"}

    async def process(self, event: Event, port: str) -> Event | None:
        return None


def _limits(text: str) -> dict[str, int | None]:
    from rspp.nodes import NodeCatalog

    catalog = NodeCatalog((Path(__file__).resolve().parent,), NodeRegistry())
    graph = RuntimeGraph.from_definition(compile_spec(parse_spec_text(text), catalog=catalog))
    return {n.id: n.timeout_ms for n in graph.nodes}


def test_provider_nodes_are_bounded_by_their_providers_unless_the_spec_says_otherwise() -> None:
    limits = _limits(VOICE)
    assert limits["stt"] is None and limits["llm"] is None and limits["tts"] is None
    explicit = _limits(VOICE.replace("  - id: llm\n    type: llm\n",
                                     "  - id: llm\n    type: llm\n    timeout_ms: 2500\n"))
    assert explicit["llm"] == 2500 and explicit["tts"] is None
    assert limits["vad"] is None  # inline (sync) nodes run in the scheduler: never bounded
    tapped = _limits(VOICE.replace(
        "  - id: tts\n", f"  - id: tap\n    type: python:{__name__}:SlowTap\n  - id: tts\n"
    ).replace("  - {from: vad.audio, to: stt.audio}",
              "  - {from: vad.audio, to: stt.audio}\n  - {from: input.audio, to: tap.audio}"))
    assert tapped["tap"] == 800  # the simple/v1 profile's node budget
