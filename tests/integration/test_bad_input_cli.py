"""Bad input through the real ``rspp`` app: one line ``FILE[:LINE]: field: message``, exit != 0.

Every file-reading command (``run``, ``lint``, ``spec resolve``, ``slo report``,
``timeline show``, ``replay``, ``contracts validate``) gets the inputs that used to
print tracebacks or pass silently, plus generated timeline mutations.
"""

from __future__ import annotations

import json
import re
import struct
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from rspp.cli import app
from rspp.observability import TimelineBuilder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
ONE_LINE = re.compile(r"^(?P<file>[^\s:]+)(?::\d+){0,2}: \S.*$")


def rspp(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.output
    return result


def assert_one_line(result: Result, path: Path, *, code: int | None = None) -> str:
    """Non-zero exit, no traceback, exactly one stderr line starting with ``path``."""
    assert result.exit_code != 0 if code is None else result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(str(path)), lines[0]
    assert ONE_LINE.match(lines[0].replace(str(path), "FILE", 1)), lines[0]
    return lines[0]


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 3200)
    return path


# --- WAV and specs: run, lint, spec resolve ---------------------------------------------------

def test_run_reports_a_hostile_wav_header_as_one_line(wav: Path, tmp_path: Path) -> None:
    bad = tmp_path / "huge_fmt.wav"
    data = bytearray(wav.read_bytes())
    struct.pack_into("<I", data, 16, 0xFFFFFFF0)
    bad.write_bytes(bytes(data))
    line = assert_one_line(rspp("run", str(VOICE), "--input", str(bad)), bad, code=2)
    assert "fmt.chunk_size: 4294967280" in line and "(--input)" in line


SPECS = {
    "latin1": ("name: caf\u00e9\nversion: 1.0.0\n".encode("latin-1"), "is not UTF-8", 1),
    "python_tag": (b'name: !!python/object/apply:os.system ["true"]\nversion: 1.0.0\n',
                   "YAML tag", 1),
    "deep_flow": (b"name: x\nversion: 1.0.0\nmetadata: " + b"[" * 5000 + b"]" * 5000 + b"\n",
                  "levels deep", 3),
    "deep_block": (b"name: x\nversion: 1.0.0\nmetadata:\n"
                   + b"".join(b"  " * i + b"- \n" for i in range(1, 300)), "levels deep", 0),
}


@pytest.mark.parametrize("case", sorted(SPECS))
@pytest.mark.parametrize("command", ["run", "resolve", "lint"])
def test_hostile_specs_are_one_line_in_every_spec_command(
    case: str, command: str, tmp_path: Path, wav: Path
) -> None:
    data, message, line = SPECS[case]
    spec = tmp_path / f"{case}.yaml"
    spec.write_bytes(data)
    if command == "lint":
        result = rspp("lint", str(spec))
        assert result.exit_code == 1 and "Traceback" not in result.output
        issues = [ln for ln in result.stdout.splitlines() if not ln.startswith("    hint:")]
        assert len(issues) == 1 and issues[0].startswith(f"{spec}:") and message in issues[0]
        return
    args = ("run", str(spec), "--input", str(wav)) if command == "run" else \
        ("spec", "resolve", str(spec))
    text = assert_one_line(rspp(*args), spec, code=2)
    assert message in text
    if line:
        assert text.startswith(f"{spec}:{line}:")


def test_merge_keys_are_expanded_not_a_crash(tmp_path: Path) -> None:
    spec = tmp_path / "merge.yaml"
    spec.write_text(VOICE.read_text().replace(
        "  - id: stt\n    type: stt\n", "  - &stt {id: stt, type: stt}\n").replace(
        "  - id: tts\n    type: tts\n", "  - <<: *stt\n    id: tts\n    type: tts\n"))
    assert rspp("lint", "--strict", str(spec)).exit_code == 0
    resolved = rspp("spec", "resolve", "--json", str(spec))
    assert resolved.exit_code == 0
    assert {n["id"] for n in json.loads(resolved.stdout)["nodes"]} >= {"stt", "tts"}


def test_unknown_provider_fails_before_any_output_exists(tmp_path: Path, wav: Path) -> None:
    spec = tmp_path / "unknown.yaml"
    spec.write_text(VOICE.read_text().replace("primary: local", "primary: nosuchllm"))
    timeline, output = tmp_path / "t.jsonl", tmp_path / "out.wav"
    result = rspp("run", str(spec), "--input", str(wav), "--timeline", str(timeline),
                  "--output", str(output))
    line = assert_one_line(result, spec, code=2)
    assert "providers.llm" in line and "nosuchllm" in line
    assert not timeline.exists() and not output.exists()


# --- timelines: slo report, timeline show, replay, contracts validate -------------------------

def _good_lines() -> list[str]:
    builder = TimelineBuilder()
    builder.turn("t1")
    return [json.dumps(line) for line in builder.lines()]


def _with(value: object, field: str = "runtime_sequence") -> str:
    lines = _good_lines()
    bad = json.loads(lines[3])
    bad["record"][field] = value
    lines[3] = json.dumps(bad)
    return "\n".join(lines) + "\n"


TIMELINES = {
    "soon": (_with("soon"), 4, "record.runtime_sequence"),
    "null": (_with(None, "runtime_timestamp_ms"), 4, "record.runtime_timestamp_ms"),
    "huge": (_with(2**80, "authority_epoch"), 4, "record.authority_epoch"),
    "deep": ("\n".join([*_good_lines()[:2], '{"kind": "x", "record": {"a": ' + "[" * 100_000
                        + "]" * 100_000 + "}}"]) + "\n", 3, "nested too deeply"),
}
TOOLS = {
    "slo": ("slo", "report"),
    "show": ("timeline", "show"),
    "replay": ("replay", "--spec", str(VOICE)),
    "validate": ("contracts", "validate"),
}


@pytest.mark.parametrize("case", sorted(TIMELINES))
@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_malformed_timeline_lines_are_one_line_in_every_tool(
    case: str, tool: str, tmp_path: Path
) -> None:
    text, line, field = TIMELINES[case]
    path = tmp_path / f"{case}.jsonl"
    path.write_text(text)
    result = rspp(*TOOLS[tool], str(path))
    if tool == "validate":  # a validator: its verdict is the output, one line per file
        assert result.exit_code == 1 and result.stdout.count("\n") == 1
        assert result.stdout.startswith(f"{path}:{line}: invalid: "), result.stdout
        return
    message = assert_one_line(result, path, code=2)
    assert message.startswith(f"{path}:{line}: ") and field in message


def test_slo_report_without_evidence_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line(rspp("slo", "report", "--json", str(empty)), empty, code=1)
    no_turn = tmp_path / "no_turn.jsonl"
    no_turn.write_text("\n".join(_good_lines()[:4]) + "\n")  # ingress frames and a proposal
    result = rspp("slo", "report", str(no_turn))
    assert "no accepted turn" in assert_one_line(result, no_turn, code=1)
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(_good_lines()) + "\n")
    assert rspp("slo", "report", str(good)).exit_code == 0


def test_contracts_validate_calls_an_empty_file_invalid(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    result = rspp("contracts", "validate", str(empty))
    assert result.exit_code == 1
    assert result.stdout == f"{empty}: invalid: <file>: the file is empty; there is nothing to " \
        "validate\n"


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(at=st.integers(0, 9), field=st.sampled_from(["runtime_sequence", "runtime_timestamp_ms",
                                                     "wall_clock_timestamp_ms", "session_id",
                                                     "turn_id", "transport_sequence"]),
       value=st.sampled_from(["soon", None, 2**80, -5, 1.5, [1], {"a": 1}]),
       tool=st.sampled_from(["slo", "show"]))
def test_generated_bad_fields_never_escape_the_cli(
    tmp_path: Path, at: int, field: str, value: object, tool: str
) -> None:
    lines = _good_lines()
    bad = json.loads(lines[at])
    bad["record"][field] = value
    lines[at] = json.dumps(bad)
    path = tmp_path / "gen.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = rspp(*TOOLS[tool], str(path))
    if result.exit_code == 2:
        assert_one_line(result, path, code=2)
    else:  # the mutation was legal there (e.g. a null turn_id): a normal report
        assert "Traceback" not in result.output and result.stdout
