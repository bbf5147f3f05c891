"""Playback replay takes an input without recorded outputs at once (issue 12, replay speed).

In recorded-provider playback a provider node's input that caused no output in the
recording (most audio frames reaching an STT node) needs no worker: the node only
counts it. The kernel lets the playback node take such an input as it is routed
(``NodeHost.take_directly``) instead of queueing it and waking the node's worker
task; the replay must be the same record for record. Each recording (calm turns,
barge-ins, a changed spec) is replayed with the direct path and with it switched
off: the candidate timelines are identical, and with it the node's ``process`` runs
only for the inputs the recording holds outputs for (and the few routed while a
control command, such as a turn opening, was pending).
"""

from __future__ import annotations

from typing import Any

import pytest

from rspp.contracts import ReplayMode
from rspp.kernel import Event
from rspp.replay import ReplayEngine, ReplayOptions, RigOptions, load_recording
from rspp.runner import (
    DEMO_PROVIDER_TYPES,
    DEMO_SPEC,
    demo_frames,
    demo_registry,
    node_session,
    record_session,
)
from rspp.spec import GraphDefinition, compile_spec, parse_spec_text

pytestmark = pytest.mark.integration

PLAYBACK = ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS


def graph(version: str = "1.0.0", prefix: str = "heard: ") -> GraphDefinition:
    return compile_spec(parse_spec_text(DEMO_SPEC.format(version=version, prefix=prefix)))


async def replay_lines(lines: list[dict[str, Any]], gd: GraphDefinition, *, direct: bool
                       ) -> tuple[list[dict[str, object]], Any, dict[str, int]]:
    """Replay ``lines``; returns the candidate lines, the report and, per provider node,
    how many times its ``process`` ran."""
    engine = ReplayEngine(load_recording(lines), gd, registry=demo_registry(),
                          session_factory=node_session,
                          options=ReplayOptions(mode=PLAYBACK,
                                                provider_node_types=DEMO_PROVIDER_TYPES))
    calls: dict[str, int] = {}
    for host in engine.rig.session.hosts.values():
        if not host.is_async:
            continue
        for buf, _ in host.buffers:
            assert buf.direct is not None  # the playback rig installed it
            if not direct:
                buf.direct = None
        calls[host.node_id] = 0
        inner = host.process

        async def counted(ev: Event, port: str, _id: str = host.node_id,
                          _inner: Any = inner) -> Any:
            calls[_id] += 1
            return await _inner(ev, port)

        host.process = counted
    result = await engine.finish()
    return result.lines, result.report, calls


@pytest.mark.parametrize("silence", [10, 5, 3], ids=["calm", "barge-in", "overlapping"])
async def test_direct_inputs_replay_record_for_record(silence: int) -> None:
    frames = demo_frames(6, silence=silence)
    lines = await record_session(graph(), frames, registry=demo_registry(),
                                 options=RigOptions(provider_node_types=DEMO_PROVIDER_TYPES))
    recorded_outputs = {node: {str(ln["record"]["causal_parent_id"]) for ln in lines
                               if isinstance(ln["record"], dict)
                               and ln["record"].get("node_id") == node
                               and str(ln["record"].get("causal_parent_id", "")).startswith(
                                   f"{node}#in")}
                        for node in ("asr", "reply")}
    for gd in (graph(), graph("2.0.0", "heard: v2 ")):
        fast, fast_report, fast_calls = await replay_lines(lines, gd, direct=True)
        slow, slow_report, slow_calls = await replay_lines(lines, gd, direct=False)
        assert fast == slow
        assert fast_report == slow_report
        # queued: every audio frame ran asr's process; direct: those with outputs, and
        # the few routed while the session had control pending (a turn being opened)
        assert slow_calls["asr"] == len(frames)
        assert len(recorded_outputs["asr"]) <= fast_calls["asr"] < len(frames) // 4
        assert fast_calls["reply"] <= slow_calls["reply"]
    assert fast_report.findings != ()  # (the changed spec's replay diverges)
