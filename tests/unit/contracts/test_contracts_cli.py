"""``rspp contracts validate|schema|compat`` through the real Typer app (F-028, NF-013)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from _contracts_support import fixture_files, kind_of_fixture, load
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from rspp.cli import app

pytestmark = pytest.mark.unit

runner = CliRunner()
VALID = fixture_files("valid")
INVALID = fixture_files("invalid")


def _run(*args: str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["contracts", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def test_every_fixture_classified_like_the_reference_with_inferred_kind() -> None:
    code, lines = _run("validate", *map(str, VALID), *map(str, INVALID))
    assert code == 1
    verdicts = dict(line.split(": ", 1) for line in lines)
    for path in VALID:
        assert verdicts[str(path)] == "valid"
    for path in INVALID:
        expected_kind = kind_of_fixture(path)
        if expected_kind == "event_record" and "signal" in load(path):
            continue  # inferred as control_signal; checked with --kind below
        assert verdicts[str(path)].startswith("invalid: "), path.name


def test_explicit_kind() -> None:
    forbids = next(p for p in INVALID if "event_record_forbids_signal" in p.stem)
    code, lines = _run("validate", "--kind", "event_record", str(forbids))
    assert code == 1 and lines == [
        f'{forbids}: invalid: lane: must be "ControlLane", got "DataLane" (+1 more)'
    ]
    code, lines = _run("validate", "--kind", "event_record", str(forbids), "--all")
    assert lines[1] == f"{forbids}: invalid: <root>: field(s) signal must not be present"
    good = next(p for p in VALID if p.stem == "turn_transition__active_commit")
    assert _run("validate", "--kind", "turn_transition", str(good)) == (0, [f"{good}: valid"])
    code, _ = _run("validate", "--kind", "control_signal", str(good))
    assert code == 1


def test_only_valid_files_exit_zero() -> None:
    code, lines = _run("validate", *map(str, VALID[:5]))
    assert code == 0 and all(line.endswith(": valid") for line in lines) and len(lines) == 5


def test_invalid_line_names_the_field(tmp_path: Path) -> None:
    bad = next(p for p in INVALID if p.stem == "control_signal__cancel__missing_scope")
    code, lines = _run("validate", str(bad))
    assert (code, lines) == (1, [f"{bad}: invalid: scope: required field is missing"])


def test_unreadable_and_malformed_files_are_invalid_not_tracebacks(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"lane": ')
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00")
    missing = tmp_path / "missing.json"
    code, lines = _run("validate", str(broken), str(binary), str(missing))
    assert code == 1
    assert lines[0].startswith(f"{broken}: invalid: <file>: malformed JSON")
    assert len(lines) == 3
    assert lines[1].startswith(f"{binary}: invalid: <file>: malformed JSON")
    assert lines[2].startswith(f"{missing}: invalid: <file>: cannot read file")


def test_jsonl_timeline_validates_each_line(tmp_path: Path) -> None:
    audio = load(next(p for p in VALID if p.stem == "event_record__audio_event_pts_ms"))
    signal = load(next(p for p in VALID if p.stem == "control_signal__barge_in"))
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps(
            {
                "kind": "event_record",
                "record": audio,
                "payload": {"type": "text", "text": "hi", "is_final": False, "revision": 0},
            }
        )
        + "\n\n"
        + json.dumps({"kind": "control_signal", "record": signal})
        + "\n"
    )
    assert _run("validate", str(good)) == (0, [f"{good}: valid"])
    bad = tmp_path / "bad.jsonl"
    no_time = {k: v for k, v in audio.items() if k != "media_time"}
    bad.write_text(json.dumps({"kind": "event_record", "record": no_time}) + "\n{oops\n")
    code, lines = _run("validate", "--all", str(bad))
    assert code == 1
    assert lines == [
        f"{bad}:1: invalid: record.media_time: required field is missing",
        f"{bad}:2: invalid: <line>: invalid JSON: JSON is malformed: "
        "object keys must be strings (byte 1)",
    ]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert _run("validate", str(empty)) == (
        1, [f"{empty}: invalid: <file>: the file is empty; there is nothing to validate"])


def test_unknown_kind_is_a_usage_error() -> None:
    result = runner.invoke(app, ["contracts", "validate", "--kind", "bogus", "x.json"])
    assert result.exit_code == 2
    assert "not a contract kind" in result.output


@pytest.mark.parametrize("kind", sorted({kind_of_fixture(p) for p in VALID}))
def test_schema_of_our_types_accepts_every_valid_fixture(kind: str) -> None:
    code, lines = _run("schema", kind)
    assert code == 0
    schema = json.loads("\n".join(lines))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in VALID:
        if kind_of_fixture(path) == kind:
            assert validator.is_valid(load(path)), path.name
    assert not validator.is_valid({"unexpected": 1})


def test_schema_of_all_kinds() -> None:
    code, lines = _run("schema")
    document = json.loads("\n".join(lines))
    assert code == 0 and len(document["anyOf"]) == 6
    assert "ArtifactBundle" in document["$defs"]


def _write(tmp_path: Path, name: str, schema: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(schema))
    return str(path)


def test_compat_additive_and_breaking(tmp_path: Path, reference_schema: dict[str, Any]) -> None:
    old = _write(tmp_path, "old.json", reference_schema)
    additive = copy.deepcopy(reference_schema)
    additive["$defs"]["event_envelope"]["properties"]["trace_id"] = {"type": "string"}
    code, lines = _run("compat", old, _write(tmp_path, "add.json", additive))
    assert code == 0
    assert lines == ["additive: $defs/event_envelope.trace_id: new optional field", "additive"]
    breaking = copy.deepcopy(reference_schema)
    breaking["$defs"]["control_signal_name"]["enum"].remove("barge_in")
    code, lines = _run("compat", old, _write(tmp_path, "break.json", breaking))
    assert code == 1
    assert lines[0] == 'breaking: $defs/control_signal_name: enum value(s) removed: "barge_in"'
    assert lines[-1].startswith("breaking: 1 breaking change(s)")
    assert _run("compat", old, old) == (0, ["identical"])


def test_compat_unreadable_schema_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["contracts", "compat", str(tmp_path / "no.json"), str(tmp_path / "no.json")]
    )
    assert result.exit_code == 2
    assert "cannot read file" in result.output


def test_compat_breaking_allowed_only_with_major_bump(
    tmp_path: Path, reference_schema: dict[str, Any]
) -> None:
    old = _write(tmp_path, "old.json", {**reference_schema, "version": "v1.0"})
    breaking = copy.deepcopy(reference_schema)
    breaking["$defs"]["decision_outcome"]["required"].append("turn_id")
    minor = _write(tmp_path, "minor.json", {**breaking, "version": "v1.1"})
    code, lines = _run("compat", old, minor)
    assert code == 1 and "(version v1.0 -> v1.1)" in lines[-1]
    major = _write(tmp_path, "major.json", {**breaking, "version": "v2.0"})
    code, lines = _run("compat", old, major)
    assert code == 0
    assert lines[0] == "breaking: $defs/decision_outcome.turn_id: field is now required"
    assert lines[-1] == "breaking (allowed: major version bump v1.0 -> v2.0)"
