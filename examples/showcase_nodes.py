"""The custom node of ``pipelines/examples/showcase.yaml``: a filler phrase per turn.

Referenced from the spec as ``type: python:examples.showcase_nodes:Filler``; run
``rspp`` from the repository root (or next to the spec) so ``examples`` imports.
"""

from __future__ import annotations

from rspp import Event, Node, param


class Filler(Node):
    """Says a short filler phrase as soon as the user's final transcript arrives."""

    inputs = ("text",)
    outputs = ("text",)
    port_types = {"text": "text"}
    scope = "turn"
    parameters = (param("phrase", "str", "One moment.", "what to say while the model thinks"),)

    def process(self, event: Event, port: str) -> Event | None:
        if event.kind != "text" or not event.final or not str(event.payload or "").strip():
            return None
        return event.derive("text", str(self.params.get("phrase", "One moment.")), final=True)
