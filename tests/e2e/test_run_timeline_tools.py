"""Timelines written by ``rspp run`` feed the timeline tools unchanged.

A real offline run with a barge-in (espeak-ng question, pocketsphinx, local
responder, espeak-ng reply) writes a timeline that `rspp contracts validate`
accepts line by line and from which `rspp slo report` computes all seven MVP
gates with samples: the records of kernel, transport, providers and recorder
share one session time base and the transport records its ingress frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e


@pytest.fixture
def rspp(rspp_cli: RsppCli) -> RsppCli:
    return rspp_cli

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"


def test_run_timeline_validates_and_yields_all_seven_gates(
    spoken: dict[str, Path], rspp: RsppCli, tmp_path: Path
) -> None:
    question, interrupt = spoken["question"], spoken["interrupt"]
    timeline = tmp_path / "t.jsonl"
    run = rspp("run", str(VOICE), "--input", str(question), "--barge-in", f"{interrupt}@1.0",
               "--real-time", "--timeline", str(timeline), "--output", str(tmp_path / "r.wav"))
    assert run.returncode == 0, run.stdout + run.stderr

    validate = rspp("contracts", "validate", str(timeline))
    assert validate.returncode == 0, validate.stdout
    assert validate.stdout.strip() == f"{timeline}: valid"

    lines = [json.loads(line) for line in timeline.read_text().splitlines()]
    times = [ln["record"]["runtime_timestamp_ms"] for ln in lines
             if "runtime_timestamp_ms" in ln["record"]]
    # one session time base: milliseconds since session start, not a host clock reading
    assert max(times) < 60_000, max(times)
    ingress = [ln for ln in lines if ln["kind"] == "event_record"
               and ln["record"].get("edge_id") == "input.audio"]
    assert ingress and all(ln["record"]["transport_sequence"] is not None for ln in ingress)

    report = rspp("slo", "report", "--json", str(timeline))
    gates = {g["gate"]: g for g in json.loads(report.stdout)["gates"]}
    assert sorted(gates) == [1, 2, 3, 4, 5, 6, 7]
    for number in (1, 2, 3, 7):
        assert gates[number]["count"] >= 1, gates[number]  # every latency gate has samples
    assert gates[3]["count"] == 1  # the one barge-in produced one cancel-fence sample
    assert gates[4]["value"] == 0  # no stale-epoch output accepted
    assert gates[5]["value"] == 100 and gates[6]["value"] == 100
    assert all(g["pass"] is True for g in gates.values()), gates
    assert report.returncode == 0


def test_run_refuses_a_misspelt_spec_field_naming_it(rspp: RsppCli, tmp_path: Path) -> None:
    import wave

    spec = tmp_path / "typo.yaml"
    spec.write_text(VOICE.read_text().replace("providers:", "providerz:", 1))
    audio = tmp_path / "silence.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 1600)
    run = rspp("run", str(spec), "--input", str(audio))
    assert run.returncode != 0
    assert "providerz" in run.stderr and "did you mean 'providers'" in run.stderr
