"""``rspp run --metrics-out --trace-out --log-out``: a real run leaves its telemetry behind.

(F-068, F-069, F-070, F-104.) ``rspp say`` makes the WAVs, ``rspp run`` (real CLI
process, real espeak-ng / pocketsphinx) runs the offline assistant with a
barge-in; the test parses the Prometheus exposition file, the span JSON Lines
and the JSON log lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
PV = "voice-assistant@1.0.0"
def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_writes_metrics_spans_and_json_logs(
    spoken: dict[str, Path], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    q, i = spoken["question"], spoken["interrupt"]
    prom, spans_f, logs_f = tmp_path / "m.prom", tmp_path / "spans.jsonl", tmp_path / "log.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(q), "--barge-in", f"{i}@0.4", "--json",
               "--metrics-out", str(prom), "--trace-out", str(spans_f), "--log-out", str(logs_f))
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    turn_ids = [t["turn_id"] for t in result["turns"]]
    assert [t["terminal"] for t in result["turns"]] == ["abort", "commit"]

    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(prom.read_text()):
        for s in fam.samples:
            series.setdefault(s.name, []).append((s.labels, s.value))
    node_counts = {lab["node_id"]: v for lab, v in series["rspp_node_latency_seconds_count"]}
    assert set(node_counts) == {"vad", "stt", "llm", "segmenter", "tts"}
    assert all(v >= 1 for v in node_counts.values())
    node_series = series["rspp_node_latency_seconds_count"]
    assert all(lab["pipeline_version"] == PV for lab, _ in node_series)
    edges = {lab["edge_id"] for lab, _ in series["rspp_edge_queue_depth"]}
    assert "vad.audio->stt.audio" in edges
    assert {lab["edge_id"] for lab, _ in series["rspp_edge_drops_total"]} == edges
    assert series["rspp_cancel_latency_seconds_count"] == [
        ({"pipeline_version": PV, "scope": "turn"}, 1.0)]
    prov = {lab["provider"] for lab, _ in series["rspp_provider_latency_seconds_count"]}
    assert prov == {"pocketsphinx", "local", "espeak"}
    assert series["rspp_active_sessions"] == [({"pipeline_version": PV}, 0.0)]

    spans = _lines(spans_f)
    names = [s["name"] for s in spans]
    assert names.count("rspp.session") == 1 and names.count("rspp.turn") == 2
    for node in ("vad", "stt", "llm", "segmenter", "tts"):
        assert f"rspp.node {node}" in names
    assert any(n.startswith("rspp.provider ") for n in names)
    trace_ids = {s["context"]["trace_id"] for s in spans}
    assert len(trace_ids) == 1  # one trace per session
    for sp in spans:
        assert sp["attributes"]["rspp.session_id"] == "local-session"
        assert sp["attributes"]["rspp.pipeline_version"] == PV
    turns = {sp["attributes"]["rspp.turn_id"]: sp for sp in spans if sp["name"] == "rspp.turn"}
    assert set(turns) == set(turn_ids)
    assert turns[turn_ids[0]]["attributes"]["rspp.terminal"] == "abort"

    logs = _lines(logs_f)
    assert logs and all(ln["session_id"] == "local-session" for ln in logs)
    assert {"turn opened", "turn closed"} <= {ln["message"] for ln in logs}
    assert {ln["turn_id"] for ln in logs if ln["message"] == "turn closed"} == set(turn_ids)


def test_metrics_out_into_missing_directory_is_refused(rspp_cli: RsppCli, tmp_path: Path) -> None:
    res = rspp_cli.run(str(VOICE), "--input", str(tmp_path / "q.wav"),
               "--metrics-out", str(tmp_path / "nope" / "m.prom"))
    assert res.returncode == 2
    assert "--metrics-out" in res.stderr and "does not exist" in res.stderr
