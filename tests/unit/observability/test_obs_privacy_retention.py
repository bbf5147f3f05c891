"""Redaction in recordings (F-073, NF-014) and retention sweep (F-071, F-116)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from rspp.contracts import AudioPayload, PayloadClass, TextPayload
from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    JsonLinesFileSink,
    ObservabilityError,
    Redactor,
    RetentionPolicy,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
    read_timeline,
    sweep,
)

pytestmark = pytest.mark.unit

PII = "mail me at jane.doe@example.com or call +1 415 555 0100, card 4111 1111 1111 1111"


async def _record(tmp_path: Path, redactor: Redactor | None) -> list[dict[str, object]]:
    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    b = TimelineBuilder()
    b.turn("t1", text=PII)
    b.event("t1", node_id="tts", payload_class=PayloadClass.AUDIO_RAW,
            payload=AudioPayload(sample_rate_hz=16000, channels=1, data=b"\x10\x20" * 80))
    for record, payload in b.items:
        recorder.append(record, payload)
    recorder.close()
    path = tmp_path / ("red.jsonl" if redactor else "plain.jsonl")
    await TimelineExporter(recorder, JsonLinesFileSink(path), clock, redactor=redactor).run()
    lines, errors = read_timeline(path)
    assert errors == []
    return [{"kind": ln.kind, "record": ln.record, "payload": ln.payload} for ln in lines]


async def test_redaction_changes_payloads_only(tmp_path: Path) -> None:
    redactor = Redactor(mask_audio=True)
    plain = await _record(tmp_path, None)
    red = await _record(tmp_path, redactor)
    stored = (tmp_path / "red.jsonl").read_text()
    for secret in ("jane.doe@example.com", "555 0100", "4111 1111 1111 1111"):
        assert secret not in stored
    text = next(ln["payload"]["text"] for ln in red if ln["payload"] and "text" in ln["payload"])  # type: ignore[index,operator]
    assert "[REDACTED:email]" in text and "[REDACTED:card_number]" in text
    audio = next(ln["payload"] for ln in red if ln["payload"] and "data" in ln["payload"])  # type: ignore[operator]
    assert base64.b64decode(audio["data"]) == bytes(160)  # type: ignore[index]
    # same records, same order, same timestamps: only payloads differ
    assert [ln["record"] for ln in plain] == [ln["record"] for ln in red]
    # auditable
    assert redactor.counts["email"] == 1 and redactor.counts["audio_mask"] == 1
    assert {rule for a in redactor.audit for rule in a.rules} >= {"email", "card_number",
                                                                   "audio_mask"}
    assert all(a.session_id == "s1" and a.event_id for a in redactor.audit)


def test_redactor_leaves_clean_text_alone() -> None:
    redactor = Redactor()
    out = redactor.redact_payload(
        {"type": "text", "text": "the weather is fine", "is_final": True, "revision": 0},
        session_id="s", event_id="e")
    assert out["text"] == "the weather is fine" and redactor.audit == []
    assert TextPayload(text="x", is_final=True, revision=0)  # payload type the recorder carries


def test_sweep_deletes_expired_recordings_per_tenant_and_audits(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    files = {
        "acme/old.jsonl": now - 3 * 86400,
        "acme/new.jsonl": now - 3600,
        "globex/old.jsonl": now - 3 * 86400,
        "globex/notes.txt": now - 30 * 86400,
    }
    for name, mtime in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n")
        os.utime(path, (mtime, mtime))
    policy = RetentionPolicy(default_max_age_s=86400, per_tenant={"globex": 7 * 86400})
    result = sweep(tmp_path, policy, now_s=now)
    assert result.deleted == ["acme/old.jsonl"]
    assert sorted(result.kept) == ["acme/new.jsonl", "globex/old.jsonl"]
    assert not (tmp_path / "acme/old.jsonl").exists()
    assert (tmp_path / "globex/notes.txt").exists()  # not a recording
    audit = [json.loads(x) for x in (tmp_path / "retention-audit.jsonl").read_text().splitlines()]
    assert audit == [{"action": "deleted", "tenant": "acme", "file": "acme/old.jsonl",
                      "age_s": 259200.0, "max_age_s": 86400.0, "swept_at_s": now}]
    # a second sweep with nothing expired deletes nothing
    assert sweep(tmp_path, policy, now_s=now).deleted == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"default_max_age_s": -1.0}, "default_max_age_s"),
        ({"default_max_age_s": float("nan")}, "default_max_age_s"),
        ({"per_tenant": {"acme": -86400.0}}, "per_tenant['acme']"),
    ],
)
def test_negative_retention_is_refused_naming_the_field(
    tmp_path: Path, kwargs: dict[str, Any], field: str
) -> None:
    keep = tmp_path / "acme" / "rec.jsonl"
    keep.parent.mkdir()
    keep.write_text("{}\n")
    expected = re.escape(f"RetentionPolicy.{field} must be >= 0")
    with pytest.raises(ObservabilityError, match=expected):
        sweep(tmp_path, RetentionPolicy(**kwargs), now_s=0.0)
    assert keep.exists()
    assert RetentionPolicy(default_max_age_s=None).max_age_for("acme") is None
