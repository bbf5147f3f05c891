"""In-band metrics events through ``rspp run --metrics-events`` (F-026).

Off by default. With the switch, the session records TelemetryLane ``metric`` records
with their values (``MetricsPayload``) at each turn's end and when it stops: the
latency of every node (tagged ``node_id``), the queue depth of every edge (tagged
``edge_id``) and what nodes report themselves (the LLM's reply tokens). Nothing else
changes, and the recording still replays with no divergence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def _run(rspp_cli: RsppCli, question: Path, tl: Path, *extra: str
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    res = rspp_cli.run(str(VOICE), "--input", str(question), "--timeline", str(tl), "--json",
                       *extra)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), [json.loads(x) for x in tl.read_text().splitlines()]


def _metrics(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [ln for ln in lines if ln["kind"] == "event_record"
            and ln["record"]["lane"] == "TelemetryLane" and ":metric:" in ln["record"]["event_id"]]


def test_metrics_events_carry_node_latency_and_edge_queue_depth(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    plain, plain_lines = _run(rspp_cli, spoken["question"], tmp_path / "plain.jsonl")
    assert not _metrics(plain_lines)  # off by default
    out, lines = _run(rspp_cli, spoken["question"], tmp_path / "metrics.jsonl",
                      "--metrics-events", "--record-level", "L2")
    tid = out["turns"][0]["turn_id"]
    metrics = _metrics(lines)
    assert metrics
    for ln in metrics:  # every metric record travels with its value
        assert ln["payload"]["type"] == "metrics" and isinstance(ln["payload"]["value"], float)
    spec = yaml.safe_load(VOICE.read_text())
    nodes = {n["id"] for n in spec["nodes"]}
    at_turn_end = [ln for ln in metrics if ln["record"].get("turn_id") == tid]
    latency = {ln["record"]["node_id"]: ln["payload"] for ln in at_turn_end
               if ln["record"]["reason"] == "node_latency"}
    assert set(latency) == nodes  # one latency per node, tagged node_id
    for node, p in latency.items():
        assert p["name"] == "node_latency_us" and p["unit"] == "us"
        assert int(p["labels"]["events"]) > 0 and p["value"] > 0, (node, p)
    depth = {ln["record"]["edge_id"]: ln["payload"] for ln in at_turn_end
             if ln["record"]["reason"] == "queue_depth"}
    # every queued edge: the ones into the provider nodes (which run as workers; the
    # inline nodes - vad, segmenter - take their input without a queue) and the entry
    queued = {f"{e['from']}->{e['to']}" for e in spec["edges"]
              if e["to"].split(".")[0] in ("stt", "llm", "tts")}
    assert queued | {"input.audio"} == set(depth), set(depth)  # tagged edge_id
    assert "input.audio" in depth
    for edge, p in depth.items():
        assert p["name"] == "queue_depth" and p["value"] >= 0
        assert int(p["labels"]["max_depth"]) >= p["value"], (edge, p)
    assert int(depth["input.audio"]["labels"]["delivered"]) > 0
    # a node's own metric (ctx.telemetry.metric): the LLM's streamed reply tokens
    (tokens,) = [ln["payload"] for ln in at_turn_end if ln["record"]["reason"] == "node_metric"
                 and ln["record"]["node_id"] == "llm"]
    assert tokens["name"] == "llm_reply_tokens" and tokens["value"] >= 1
    assert tokens["labels"]["turn_id"] == tid
    # and once more when the session stops (session scoped)
    assert [ln for ln in metrics if ln["record"].get("turn_id") is None
            and ln["record"]["reason"] == "node_latency"]
    # the business logic is unchanged
    assert [(t["terminal"], t["reply"]) for t in out["turns"]] == \
        [(t["terminal"], t["reply"]) for t in plain["turns"]]
    # the metric records take no sequence number of their own: the recording replays clean
    rep = rspp_cli("replay", str(tmp_path / "metrics.jsonl"), "--spec", str(VOICE))
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "ORDERING=0, PLAN=0, OUTCOME=0" in rep.stdout
