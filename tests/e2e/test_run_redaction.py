"""Configurable redaction of recordings and logs through ``rspp run`` (F-073, NF-014).

The same question runs twice at recording level L2 (audio and provider outputs in the
timeline): once with only the built-in PII rules, once with ``--redact weather=weather
--redact-audio --redaction-audit FILE``. The second timeline has no "weather" in any
string (transcripts, reply text, the provider outputs L2 keeps) and only zeroed audio of
the recorded sizes; its control sequence is the first run's and the turn commits within
its budgets; the JSON logs apply the same rules; each action is in the audit file with
the rule that caused it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

#: the voice assistant on the Deepgram (fake) STT
SPEC = voice_assistant_spec("redaction", stt="{primary: deepgram}")


def _run(tmp: Path, question: Path, env: dict[str, str], name: str, *extra: str
         ) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    spec, tl, log = tmp / "spec.yaml", tmp / f"{name}.jsonl", tmp / f"{name}.log.jsonl"
    spec.write_text(SPEC)
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full.update(env)
    res = subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", "run",
                          str(spec), "--input", str(question), "--timeline", str(tl),
                          "--record-level", "L2", "--log-out", str(log), "--json", *extra],
                         capture_output=True, text=True, timeout=240, check=False, cwd=tmp,
                         env=full)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout), [json.loads(x) for x in tl.read_text().splitlines()], log


def _control(lines: list[dict[str, Any]]) -> list[str]:
    return [str(x["record"].get("signal") or x["record"].get("reason")) for x in lines
            if x["record"].get("lane") == "ControlLane"]


def _audio(lines: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(x["payload"]["data"]) for x in lines
            if isinstance(x.get("payload"), dict) and x["payload"].get("type") == "audio"]


def _audio_sizes(lines: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(edge, size) of each recorded audio frame, in file order."""
    return [(str(x["record"].get("edge_id")), len(base64.b64decode(x["payload"]["data"])))
            for x in lines
            if isinstance(x.get("payload"), dict) and x["payload"].get("type") == "audio"]


def test_redaction_rules_and_audio_masking_change_only_payloads_and_are_audited(
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    with FakeProviderServers() as fakes:
        plain_out, plain, plain_log = _run(tmp_path, spoken["question"], fakes.env, "plain")
        out, redacted, log = _run(tmp_path, spoken["question"], fakes.env, "redacted",
                                  "--redact", "weather=weather", "--redact-audio",
                                  "--redaction-audit", str(audit))
    # the printed result is not a recording: both runs heard and answered the same
    assert out["turns"][0]["transcript"] == plain_out["turns"][0]["transcript"]
    assert "weather" in out["turns"][0]["transcript"]
    plain_text = (tmp_path / "plain.jsonl").read_text()
    text = (tmp_path / "redacted.jsonl").read_text()
    assert "weather" in plain_text and "[REDACTED:weather]" in text
    assert "weather" not in text.replace("[REDACTED:weather]", "")
    # audio masked: zero, at the sizes the plain run recorded (the runs are two sessions:
    # the last input frame may race the end of the session, so compare the common frames)
    plain_audio, audio = _audio(plain), _audio(redacted)
    assert len(audio) > 200 and abs(len(audio) - len(plain_audio)) <= 2
    # per edge: the input frames and the reply chunks interleave as the two sessions ran
    for edge in {edge for edge, _ in _audio_sizes(plain)}:
        mine = [n for e, n in _audio_sizes(redacted) if e == edge]
        theirs = [n for e, n in _audio_sizes(plain) if e == edge]
        common = min(len(mine), len(theirs))
        assert common >= len(theirs) - 2 and mine[:common] == theirs[:common], edge
    assert not any(any(a) for a in audio) and any(any(a) for a in plain_audio)
    # the control sequence is unchanged and both turns commit within the spec's budgets
    assert _control(redacted) == _control(plain)
    assert "commit" in _control(redacted) and "budget_exhausted" not in _control(redacted)
    # the JSON logs apply the same rules
    assert "weather" not in log.read_text().replace("[REDACTED:weather]", "")
    # each action is auditable: which record, which rule; counts per rule
    entries = [json.loads(x) for x in audit.read_text().splitlines()]
    actions = [e for e in entries if e["kind"] == "redaction"]
    (counts,) = [e for e in entries if e["kind"] == "redaction_counts"]
    ids = {x["record"].get("event_id") for x in redacted}
    assert actions and all(a["event_id"] in ids and a["session_id"] for a in actions)
    assert sum("weather" in a["rules"] for a in actions) >= 2  # transcript and reply
    # every audio frame and every recorded TTS chunk (L2 provider outputs) was masked
    chunks = [base64.b64decode(x["payload"]["fields"]["bytes_b64"]) for x in redacted
              if isinstance(x.get("payload"), dict) and "bytes_b64" in (x["payload"].get(
                  "fields") or {})]
    assert chunks and not any(any(c) for c in chunks)
    masked = len(audio) + len(chunks)
    assert sum("audio_mask" in a["rules"] for a in actions) == masked
    assert counts["counts"]["audio_mask"] == masked and counts["counts"]["weather"] >= 2
    assert counts["actions"] == len(actions)
    assert plain_log.exists()
