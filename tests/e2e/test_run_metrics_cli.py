"""``rspp run --metrics-out --trace-out --log-out``: a real run leaves its telemetry behind.

(F-068, F-069, F-070, F-104.) ``rspp say`` makes the WAVs, ``rspp run`` (real CLI
process, real espeak-ng / pocketsphinx) runs the offline assistant with a
barge-in; the test parses the Prometheus exposition file, the span JSON Lines
and the JSON log lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
PV = "voice-assistant@1.0.0"
SID = "local-session"  # the session id `rspp run` uses
NODES = {"vad", "stt", "llm", "segmenter", "tts"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Telemetry:
    result: dict[str, Any]
    prom: Path
    spans: Path
    logs: Path

    @property
    def turn_ids(self) -> list[str]:
        return [t["turn_id"] for t in self.result["turns"]]


@pytest.fixture(scope="module")
def telemetry(spoken: dict[str, Path], rspp_cli: RsppCli,
              tmp_path_factory: pytest.TempPathFactory) -> Telemetry:
    """One ``rspp run`` with a barge-in, writing all three telemetry files; its kernel
    overhead budget (0 us) is exceeded by every sample."""
    tmp = tmp_path_factory.mktemp("telemetry")
    q, i = spoken["question"], spoken["interrupt"]
    prom, spans_f, logs_f = tmp / "m.prom", tmp / "spans.jsonl", tmp / "log.jsonl"
    res = rspp_cli.run(str(VOICE), "--input", str(q), "--barge-in", f"{i}@0.4", "--json",
               "--metrics-out", str(prom), "--trace-out", str(spans_f), "--log-out", str(logs_f),
               "--kernel-overhead-budget-us", "0")
    assert res.returncode == 0, res.stderr
    return Telemetry(json.loads(res.stdout), prom, spans_f, logs_f)


def _samples(path: Path) -> list[Sample]:
    return [s for fam in text_string_to_metric_families(path.read_text()) for s in fam.samples]


def test_run_writes_metrics_spans_and_json_logs(telemetry: Telemetry) -> None:
    result, prom, spans_f, logs_f = (telemetry.result, telemetry.prom, telemetry.spans,
                                     telemetry.logs)
    turn_ids = telemetry.turn_ids
    assert [t["terminal"] for t in result["turns"]] == ["abort", "commit"]

    series: dict[str, list[tuple[dict[str, str], float]]] = {}
    for s in _samples(prom):
        series.setdefault(s.name, []).append((s.labels, s.value))
    node_counts = {lab["node_id"]: v for lab, v in series["rspp_node_latency_seconds_count"]}
    assert set(node_counts) == NODES
    assert all(v >= 1 for v in node_counts.values())
    node_series = series["rspp_node_latency_seconds_count"]
    assert all(lab["pipeline_version"] == PV for lab, _ in node_series)
    edges = {lab["edge_id"] for lab, _ in series["rspp_edge_queue_depth"]}
    assert "vad.audio->stt.audio" in edges
    assert {lab["edge_id"] for lab, _ in series["rspp_edge_drops_total"]} == edges
    waits = series["rspp_edge_latency_seconds_count"]  # a latency distribution per edge
    assert {lab["edge_id"] for lab, _ in waits} == edges and all(v >= 1 for _, v in waits)
    assert all(lab["pipeline_version"] == PV for lab, _ in waits)
    assert series["rspp_cancel_latency_seconds_count"] == [
        ({"pipeline_version": PV, "scope": "turn"}, 1.0)]
    prov = {lab["provider"] for lab, _ in series["rspp_provider_latency_seconds_count"]}
    assert prov == {"pocketsphinx", "local", "espeak"}
    assert series["rspp_active_sessions"] == [({"pipeline_version": PV}, 0.0)]
    # kernel overhead is measured apart from node time and checked against the budget
    (kernel,) = series["rspp_kernel_overhead_seconds_count"]
    (over,) = series["rspp_kernel_overhead_budget_exceeded_total"]
    assert over[0] == {"pipeline_version": PV} and 1 <= over[1] <= kernel[1]

    spans = _lines(spans_f)
    names = [s["name"] for s in spans]
    assert names.count("rspp.session") == 1 and names.count("rspp.turn") == 2
    for node in NODES:
        assert f"rspp.node {node}" in names
    assert any(n.startswith("rspp.provider ") for n in names)
    trace_ids = {s["context"]["trace_id"] for s in spans}
    assert len(trace_ids) == 1  # one trace per session
    for sp in spans:
        assert sp["attributes"]["rspp.session_id"] == SID
        assert sp["attributes"]["rspp.pipeline_version"] == PV
    turns = {sp["attributes"]["rspp.turn_id"]: sp for sp in spans if sp["name"] == "rspp.turn"}
    assert set(turns) == set(turn_ids)
    assert turns[turn_ids[0]]["attributes"]["rspp.terminal"] == "abort"

    logs = _lines(logs_f)
    assert logs and all(ln["session_id"] == SID for ln in logs)
    assert {"turn opened", "turn closed"} <= {ln["message"] for ln in logs}
    assert {ln["turn_id"] for ln in logs if ln["message"] == "turn closed"} == set(turn_ids)
    crossed = [ln for ln in logs if ln["message"] == "kernel overhead over budget"]
    assert crossed and all(ln["level"] == "warning" and ln["budget_us"] == 0
                           and ln["kernel_overhead_us"] > 0 for ln in crossed)


def test_metrics_out_into_missing_directory_is_refused(rspp_cli: RsppCli, tmp_path: Path) -> None:
    res = rspp_cli.run(str(VOICE), "--input", str(tmp_path / "q.wav"),
               "--metrics-out", str(tmp_path / "nope" / "m.prom"))
    assert res.returncode == 2
    assert "--metrics-out" in res.stderr and "does not exist" in res.stderr


def test_run_telemetry_carries_correlation_ids(telemetry: Telemetry) -> None:
    """F-013, F-067, NF-008: the same session/turn/pipeline ids in logs, spans and metrics.

    Metric labels are bounded: pipeline version and graph ids (node, edge, provider),
    never a session or turn id; the turn rides on exemplars, with the trace id of
    the session's spans.
    """
    turn_ids = set(telemetry.turn_ids)
    assert turn_ids
    spans = _lines(telemetry.spans)
    (trace_id,) = {sp["context"]["trace_id"].removeprefix("0x") for sp in spans}

    samples = _samples(telemetry.prom)
    rspp = [s for s in samples if s.name.startswith("rspp_")]
    assert rspp
    for s in samples:  # process_* and rspp_* alike
        for label, v in s.labels.items():
            assert SID not in v and v not in turn_ids, (s.name, label, v)
    for s in rspp:
        if s.name.startswith("rspp_telemetry_errors"):
            continue  # registry-wide health counter
        assert s.labels["pipeline_version"] == PV, s.name
        if "node_id" in s.labels:
            assert s.labels["node_id"] in NODES | {"none"}, s
    provider_nodes = {s.labels["node_id"] for s in rspp
                      if s.name == "rspp_provider_latency_seconds_count"}
    assert "stt" in provider_nodes and provider_nodes <= {"stt", "llm", "tts"}
    exemplars = [(s.name, s.exemplar) for s in rspp if s.exemplar is not None]
    for name, ex in exemplars:  # a bucket keeps its latest exemplar: a subset of the turns
        assert ex.labels["turn_id"] in turn_ids, name
        assert ex.labels["trace_id"] == trace_id, name
    llm_ran = any(s.name == "rspp_node_latency_seconds_count" and s.labels["node_id"] == "llm"
                  for s in rspp)  # (a loaded machine can lose the whole turn before the LLM)
    if llm_ran:  # the LLM works inside a turn: its latency carries the turn's exemplar
        assert "rspp_node_latency_seconds_bucket" in {name for name, _ in exemplars}

    logs = _lines(telemetry.logs)
    for ln in logs:
        assert (ln["session_id"], ln["pipeline_version"]) == (SID, PV), ln
        assert ln["turn_id"] is None or ln["turn_id"] in turn_ids, ln
        assert ln.get("trace_id") == trace_id, ln
    provider_lines = [ln for ln in logs if str(ln["message"]).startswith("provider ")]
    assert provider_lines and all(ln["node_id"] in NODES for ln in provider_lines)
    assert all(ln["turn_id"] in turn_ids for ln in provider_lines if ln["node_id"] != "stt")
    turn_lines = [ln for ln in logs if ln["message"] in ("turn opened", "turn closed")]
    assert {ln["turn_id"] for ln in turn_lines} == turn_ids
    in_turn = {sp["attributes"].get("rspp.turn_id") for sp in spans} - {None}
    assert in_turn == turn_ids
    for sp in spans:  # the turn's spans, and every node/provider span after the STT
        if sp["name"] in ("rspp.turn", "rspp.node llm", "rspp.node segmenter", "rspp.node tts",
                          "rspp.provider local", "rspp.provider espeak"):
            assert sp["attributes"]["rspp.turn_id"] in turn_ids, sp["name"]
        assert sp["attributes"]["rspp.pipeline_version"] == PV


def test_run_reports_the_session_usage_summary(telemetry: Telemetry) -> None:
    """F-075: `rspp run --json` ends with the session's summary: both turns (the barged-in
    one included), the provider usage that was metered, per provider."""
    summary = telemetry.result["summary"]
    assert (summary["session_id"], summary["turns"]) == ("local-session", 2)
    per = summary["by_provider"]
    assert summary["llm_tokens"] == per["local"]["llm_tokens"] > 0
    assert summary["stt_audio_seconds"] == per["pocketsphinx"]["stt_audio_seconds"] > 1.0
    assert summary["tts_characters"] == per["espeak"]["tts_characters"] > 0
    assert summary["estimated_cost_usd"] == 0.0  # offline providers carry no price
