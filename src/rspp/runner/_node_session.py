"""The session factory the runner and ``rspp replay`` inject into a replay rig.

It builds the rig's kernel session with the built-in nodes' :class:`NodeServices`:
the graph's provider chains (adapters built on first use), the rig's turn driver
as turn hooks, its signal sink, sequencer and authority epoch.
"""

from __future__ import annotations

from rspp.kernel import SessionActor, SessionOptions
from rspp.nodes import NodeServices
from rspp.replay import RigSession

__all__ = ["node_session"]


def node_session(spec: RigSession) -> SessionActor:
    """A kernel session whose nodes see their own :class:`NodeServices` (``ctx.services``)."""
    services = NodeServices(
        providers={}, chains=dict(spec.chains), session_id=spec.session_id,
        pipeline_version=spec.pipeline_version, signal_sink=spec.signal_sink,
        hooks=spec.hooks, authority_epoch=spec.authority_epoch)
    session = SessionActor(spec.graph, session_id=spec.session_id, registry=spec.registry,
                           clock=spec.clock, output_sink=spec.output_sink,
                           signal_sink=spec.signal_sink, services=services,
                           # rigs are fed from a file or a recording: never lose input
                           options=SessionOptions(lossless=True))
    services.next_sequence = session._next_seq
    return session
