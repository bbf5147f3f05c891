"""Node-level cancel scopes through ``rspp run`` (F-034, F-041, F-037, F-040).

Cancel latency per node is in ``--metrics-out`` (``rspp_node_cancel_latency_seconds``).

A user cancel (``--cancel-after``, real time: the workers keep the pipeline busy, so
media time must not wait for it to idle) of the reply reaches every node downstream of the
transport, each through its own node scope: one ``cancel`` signal per node (scope
``node``, reason ``user_cancel:<mode>``, in propagation order). Three custom workers
fed by the final transcript are in flight when the cancel arrives:

* ``soft_worker`` (``cancel_mode: soft``, ``cancel_grace_ms: 20000``) loops over its
  work checking ``ctx.cancel`` (its node scope), acknowledges the cancel and returns
  within its grace window (F-036);
* ``hard_worker`` (``cancel_mode: hard``) waits forever and is stopped at once;
* ``stubborn`` (soft, ``cancel_grace_ms: 50``) ignores the cancel, is force-stopped
  after its grace window and the session is marked degraded (``degrade`` signal).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rspp.testing import DOMAIN_STT, SILENCE_VAD, voice_assistant_spec

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

WORKERS = textwrap.dedent('''
    import asyncio

    from rspp import Event, Node


    class _Worker(Node):
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.told = asyncio.Event()

        def on_cancel(self, turn_id, reason):
            self.told.set()


    class SoftWorker(_Worker):
        """A long loop over its work that checks the cancel cooperatively (F-036)."""

        async def process(self, event: Event, port: str):
            if event.kind != "text" or not event.final:
                return None
            while not self.ctx.cancel.cancelled:  # one slice of work per pass
                await asyncio.sleep(0.01)
            self.ctx.cancel.acknowledge()
            return event.derive("text", "finished the chunk", final=True)


    class Forever(_Worker):
        """Works on one chunk until stopped; never looks at the cancel."""

        async def process(self, event: Event, port: str):
            if event.kind != "text" or not event.final:
                return None
            await asyncio.Event().wait()
''')

WORKER_IDS = ("soft_worker", "hard_worker", "stubborn")
#: three workers take the final transcript: soft (acknowledges within its grace), hard,
#: and soft that never acknowledges (its grace is short)
SPEC = voice_assistant_spec(
    "cancel-modes", stt=DOMAIN_STT, vad=SILENCE_VAD,
    head="budgets: {turn_ms: 120000, node_ms: 60000, path_ms: 120000, provider_timeout_ms: 60000}",
    nodes=['{id: soft_worker, type: "python:cancel_workers:SoftWorker", cancel_mode: soft,\n'
           '     cancel_grace_ms: 20000, timeout_ms: 600000}',
           '{id: hard_worker, type: "python:cancel_workers:Forever", cancel_mode: hard,\n'
           '     timeout_ms: 600000}',
           '{id: stubborn, type: "python:cancel_workers:Forever", cancel_mode: soft,\n'
           '     cancel_grace_ms: 50, timeout_ms: 600000}'],
    edges=[*(f"{{from: stt.final, to: {n}.text}}" for n in WORKER_IDS),
           *(f"{{from: {n}.text, to: output.notes}}" for n in WORKER_IDS)])


def _records(timeline: Path) -> list[dict[str, Any]]:
    return [json.loads(x)["record"] for x in timeline.read_text().splitlines()]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "cancel_workers.py").write_text(WORKERS)
    path = tmp_path / "cancel_modes.yaml"
    path.write_text(SPEC)
    return path


def test_user_cancel_reaches_every_node_scope_with_its_mode(
    spec: Path, spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    tl, prom = tmp_path / "t.jsonl", tmp_path / "m.prom"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--timeline", str(tl),
                       "--cancel-after", "0.3", "--real-time", "--json",
                       "--metrics-out", str(prom))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    first = out["turns"][0]
    assert (first["terminal"], first["reason"]) == ("abort", "cancelled")
    # the session's states, owned by its SessionLifecycle (F-138)
    assert out["session_states"] == ["CONNECTING", "ACTIVE", "DRAINING", "ENDED"]
    tid = first["turn_id"]
    recs = _records(tl)
    cancels = [r for r in recs if r.get("signal") == "cancel" and r.get("turn_id") == tid]
    assert (cancels[0]["scope"], cancels[0]["reason"]) == ("turn", "user_cancel:hard")
    by_node = {r["node_id"]: r["reason"] for r in cancels if r["scope"] == "node"}
    # every node downstream of the transport, each with its declared (or default) mode
    assert by_node == {
        "vad": "user_cancel:hard", "stt": "user_cancel:hard", "llm": "user_cancel:hard",
        "segmenter": "user_cancel:hard", "tts": "user_cancel:soft",
        "soft_worker": "user_cancel:soft", "hard_worker": "user_cancel:hard",
        "stubborn": "user_cancel:soft"}
    order = [r["node_id"] for r in cancels if r["scope"] == "node"]
    assert order.index("vad") < order.index("stt") < order.index("llm") \
        < order.index("segmenter") < order.index("tts")  # along the edges (BFS)
    stops = {r["node_id"]: r["reason"].split(":")[1:3] for r in recs
             if r.get("lane") == "TelemetryLane" and r.get("turn_id") == tid
             and str(r.get("reason", "")).startswith("cancel_stop:")}
    assert stops["soft_worker"] == ["soft", "completed_in_grace"]
    acks = [r["reason"] for r in recs if str(r.get("reason", "")).startswith("cancel_ack:")]
    assert acks == ["cancel_ack:user_cancel"]  # the cooperative node said it stopped
    assert stops["hard_worker"] == ["hard", "stopped"]
    assert stops["stubborn"] == ["soft", "forced_after_grace"]
    degrade = [r for r in recs if r.get("signal") == "degrade"]
    assert [r["reason"] for r in degrade] == ["cancel_grace_exceeded:stubborn"]
    # nothing the workers produced after the cancel left the session
    assert "finished the chunk" not in res.stdout
    # cancel latency per node (F-040): one observation per reached node and mode
    counts = {(s.labels["node_id"], s.labels["mode"]): s.value
              for fam in text_string_to_metric_families(prom.read_text()) for s in fam.samples
              if s.name == "rspp_node_cancel_latency_seconds_count"}
    assert counts[("hard_worker", "hard")] == 1.0 and counts[("stubborn", "soft")] == 1.0
    assert set(by_node) == {node for node, _ in counts}
    forced = next(s.value for fam in text_string_to_metric_families(prom.read_text())
                  for s in fam.samples if s.name == "rspp_node_cancel_latency_seconds_sum"
                  and s.labels["node_id"] == "stubborn")
    assert forced >= 0.05  # held for its whole 50 ms grace window


def test_resolved_spec_shows_cancel_mode_and_grace_per_node(
    spec: Path, rspp_cli: RsppCli
) -> None:
    res = rspp_cli("spec", "resolve", str(spec), "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["path"]: r for r in json.loads(res.stdout)["values"]}
    assert rows["nodes.stubborn.cancel_mode"]["value"] == "soft"
    assert rows["nodes.stubborn.cancel_grace_ms"]["value"] == 50
    assert rows["nodes.stubborn.cancel_grace_ms"]["source"] == "spec"
    assert rows["nodes.hard_worker.cancel_mode"]["value"] == "hard"
    assert rows["nodes.llm.cancel_grace_ms"]["value"] == 75
