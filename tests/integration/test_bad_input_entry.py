"""Generated bad input against the entry function of every file-reading command.

Hypothesis mutates a real WAV, a real spec and a real recorded timeline (header
fields set to 0xFFFFFFF0, truncation, merge keys, ``!!python`` tags, Latin-1,
deep nesting, ``"soon"``/``null``/2**80 in numeric fields, 100k-deep lines)
and feeds the result to what ``rspp run``, ``rspp lint``, ``rspp spec
resolve``, ``rspp slo report``, ``rspp timeline show``, ``rspp replay`` and
``rspp contracts validate`` call first. Whatever the input, the only exception
that may escape is one of the project's error tree (:class:`RSPPError`), which
the CLI boundary turns into one line.
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspp.cli._contracts import _check_file
from rspp.errors import RSPPError
from rspp.observability import (
    INT_FIELDS,
    TimelineBuilder,
    TimelineFilter,
    evaluate_gates,
    filter_lines,
    iter_timeline,
    read_timeline,
    timeline_table,
)
from rspp.replay import load_recording
from rspp.spec import (
    ConfigLayers,
    compile_spec,
    lint_text,
    load_layers,
    load_spec,
    read_spec_source,
    resolve_effective,
)
from rspp.transports import read_wav, write_wav

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
BAD_NUMBERS: list[Any] = ["soon", None, 2**80, -1, 1.5, True, [], {}, ""]


def _only_project_errors(call: Callable[[], object]) -> None:
    """Run ``call``; an exception outside the RSPPError tree fails the test."""
    try:
        call()
    except RSPPError as exc:
        assert str(exc).strip(), "an error must say what is wrong"


def _in_tmp(name: str, data: bytes, check: Callable[[Path], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        check(path)


# --- WAV ---------------------------------------------------------------------------------------

def _valid_wav() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ok.wav"
        tone = (3000 * np.sin(np.arange(1600) / 5)).astype(np.int16).tobytes()
        write_wav(path, tone, 16000)
        return path.read_bytes()


WAV = _valid_wav()
HEADER_U32 = [4, 16, 24, 28, 40]  # RIFF size, fmt size, sample rate, byte rate, data size
HEADER_U16 = [20, 22, 32, 34]  # format tag, channels, block align, bits per sample


@st.composite
def mutated_wavs(draw: st.DrawFn) -> bytes:
    data = bytearray(WAV)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["u32", "u16", "flip", "chunk"]))
        if kind == "u32":
            value = draw(st.sampled_from([0, 1, 0xFFFFFFF0, 0xFFFFFFFF, 2**31])
                         | st.integers(0, 2**32 - 1))
            struct.pack_into("<I", data, draw(st.sampled_from(HEADER_U32)), value)
        elif kind == "u16":
            value = draw(st.sampled_from([0, 1, 3, 8, 24, 0xFFFE, 0xFFFF]) | st.integers(0, 65535))
            struct.pack_into("<H", data, draw(st.sampled_from(HEADER_U16)), value)
        elif kind == "flip":
            at = draw(st.integers(0, 63))
            data[at] = draw(st.integers(0, 255))
        else:  # an extra chunk claiming a huge size before the data chunk
            chunk = b"LIST" + struct.pack("<I", draw(st.integers(0, 2**32 - 1))) + b"abcd"
            data[36:36] = chunk
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@SETTINGS
@given(mutated_wavs())
def test_mutated_wavs_raise_only_project_errors(data: bytes) -> None:
    def check(path: Path) -> None:
        def read() -> None:
            pcm, rate = read_wav(path)
            assert pcm and len(pcm) % 2 == 0 and 8000 <= rate <= 48000
        _only_project_errors(read)

    _in_tmp("in.wav", data, check)


def test_the_reported_wav_header_is_one_error_naming_the_field(tmp_path: Path) -> None:
    data = bytearray(WAV)
    struct.pack_into("<I", data, 16, 0xFFFFFFF0)
    path = tmp_path / "huge_fmt.wav"
    path.write_bytes(bytes(data))
    with pytest.raises(RSPPError, match=r"huge_fmt.wav: fmt.chunk_size: 4294967280 bytes, but"):
        read_wav(path)


# --- specs -------------------------------------------------------------------------------------

def _deep(depth: int, flow: bool) -> str:
    if flow:
        return "x: " + "[" * depth + "]" * depth + "\n"
    return "x:\n" + "".join("  " * i + "- \n" for i in range(1, depth))


@st.composite
def mutated_specs(draw: st.DrawFn) -> bytes:
    text = SPEC
    kind = draw(st.sampled_from(["merge", "tag", "latin1", "deep", "truncate", "junk", "anchor"]))
    if kind == "merge":
        text += "\nbase: &b {name: other, version: 2}\nextra:\n  <<: *b\n"
        text = text.replace("name:", "<<: {name: merged}\nname:", draw(st.integers(0, 1)))
    elif kind == "tag":
        tag = draw(st.sampled_from(["!!python/object/apply:os.system", "!!binary", "!custom",
                                    "!!python/name:os.getcwd", "!!set", "!!str"]))
        text = text.replace("version:", f"version: {tag}", 1) if tag != "!!set" else \
            text + "\nextra: !!set {a, b}\n"
    elif kind == "latin1":
        return (text + "\ndescription: caf\u00e9\n").encode("latin-1")
    elif kind == "deep":
        text += "\n" + _deep(draw(st.integers(50, 5000)), draw(st.booleans()))
    elif kind == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == "junk":
        at = draw(st.integers(0, len(text)))
        junk = draw(st.text(alphabet=":-[]{}&*!|>'\"#%@`\t\n ", min_size=1, max_size=8))
        text = text[:at] + junk + text[at:]
    else:
        text = "a: &a [*a]\n" if draw(st.booleans()) else \
            "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
                    if i else "l0: &l0 [x]\n" for i in range(12))
    return text.encode()


@SETTINGS
@given(mutated_specs())
def test_mutated_specs_raise_only_project_errors(data: bytes) -> None:
    def check(path: Path) -> None:
        def lint() -> None:
            for issue in lint_text(read_spec_source(path), str(path), strict=True):
                assert issue.file == str(path) and issue.line >= 1

        def compile_and_resolve() -> None:
            spec = load_spec(path, strict=True)
            compile_spec(spec)
            resolve_effective(spec, env={}, layers=ConfigLayers())

        _only_project_errors(lint)
        _only_project_errors(compile_and_resolve)
        _only_project_errors(lambda: load_layers(path))

    _in_tmp("spec.yaml", data, check)


# --- timelines ---------------------------------------------------------------------------------

def _timeline() -> list[dict[str, Any]]:
    builder = TimelineBuilder()
    builder.turn("t1", audio_ref=True)
    builder.turn("t2", cancel_fence_ms=30)
    return json.loads(json.dumps(builder.lines()))  # plain JSON values


LINES = _timeline()
FIELDS = [*INT_FIELDS, "transport_sequence", "session_id", "turn_id", "signal", "lane",
          "payload_class", "reason", "cancel", "edge_id", "node_id", "causal_parent_id"]


@st.composite
def mutated_timelines(draw: st.DrawFn) -> bytes:
    rows = [json.dumps(line) for line in LINES]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(rows) - 1))
        kind = draw(st.sampled_from(["field", "deep", "truncate", "shape", "junk", "evidence"]))
        if kind == "field":
            line = json.loads(rows[at])
            line["record"][draw(st.sampled_from(FIELDS))] = draw(st.sampled_from(BAD_NUMBERS))
            rows[at] = json.dumps(line)
        elif kind == "deep":
            depth = draw(st.sampled_from([200, 2000, 100_000]))
            rows[at] = '{"kind": "event_record", "record": {"a": ' + "[" * depth + "]" * depth \
                + "}}"
        elif kind == "truncate":
            rows[at] = rows[at][: draw(st.integers(0, len(rows[at])))]
        elif kind == "shape":
            rows[at] = json.dumps(draw(st.sampled_from(
                [[1], "x", None, {"kind": 3}, {"kind": "x"}, {"kind": "x", "record": []},
                 {"kind": "x", "record": {}, "payload": 5}])))
        elif kind == "junk":
            rows[at] = draw(st.binary(min_size=1, max_size=40)).decode("latin-1")
        else:
            line = json.loads(rows[at])
            line["kind"] = "or02_evidence"
            line["record"]["cancel"] = draw(st.sampled_from(
                [{"cancel_accepted_ms": "soon", "cancel_fence_applied_ms": None}, [], "x",
                 {"cancel_accepted_ms": 2**80}]))
            rows[at] = json.dumps(line)
    return ("\n".join(rows) + "\n").encode("utf-8", "surrogateescape")


@SETTINGS
@given(mutated_timelines())
def test_mutated_timelines_raise_only_project_errors(data: bytes) -> None:
    def check(path: Path) -> None:
        def tools() -> None:
            lines, errors = read_timeline(path)
            assert all(str(e).startswith(f"{path}:") for e in errors)
            heads = list(iter_timeline(path, payloads=False))  # the payload-skipping reader
            assert len(heads) >= len(lines)
            evaluate_gates(lines)
            timeline_table(filter_lines(lines, TimelineFilter()), title="t")
            for number, issue in _check_file(None, path):
                assert number >= 0 and issue.path and issue.message

        _only_project_errors(tools)
        _only_project_errors(lambda: load_recording(path).playback_store(["llm"]))

    _in_tmp("t.jsonl", data, check)


@pytest.mark.parametrize("value", ["soon", None, 2**80])
def test_bad_numbers_are_errors_naming_file_line_and_field(tmp_path: Path, value: object) -> None:
    line = dict(LINES[3])
    line["record"] = {**line["record"], "runtime_sequence": value}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(LINES[0]) + "\n" + json.dumps(line) + "\n")
    lines, errors = read_timeline(path)
    assert len(lines) == 1 and len(errors) == 1
    assert str(errors[0]).startswith(f"{path}:2: record.runtime_sequence: must be an integer")
