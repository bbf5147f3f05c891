"""``rspp replay`` compares bytes first (issue 12): same report as the live comparison.

A JSON Lines recording is compared by :class:`~rspp.replay._paired.PairedComparison`
(each candidate record encoded and checked against the raw recorded line; the
turn-by-turn comparison runs afterwards only when a pair differs or the timeline is
not plain); a MessagePack copy of the same recording is compared turn by turn as the
replay runs. Both must print the same summary and write the same report, for a
faithful replay and for every kind of difference: another spec (PLAN), a changed
reply (OUTCOME), a record moved past the end of its turn (a late record: the report's
note counts it), a shifted timestamp (TIMING, with ``--timeline-out``: the candidate's
audio encoded). (Cut and garbage lines are refused before any comparison.)
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from rspp.contracts import ReplayMode
from rspp.replay import ReplayEngine, ReplayOptions, load_recording
from rspp.replay._paired import PairedComparison
from rspp.runner import DEMO_PROVIDER_TYPES, demo_registry, node_session
from rspp.spec import compile_spec, load_spec

pytestmark = pytest.mark.e2e


def _edit(lines: list[bytes], name: str) -> list[bytes]:
    out = list(lines)
    if name == "changed":  # the second reply differs
        replies = [i for i, ln in enumerate(out) if b'"text":"heard: ' in ln]
        out[replies[1]] = out[replies[1]].replace(b'"text":"heard: ', b'"text":"said: ', 1)
    elif name == "late":  # the first transcript moved after four later commits
        commits = [i for i, ln in enumerate(out) if b'"signal":"commit"' in ln]
        first = next(i for i, ln in enumerate(out) if b'"edge_id":"output.transcript"' in ln)
        out.insert(commits[4], out.pop(first))
    elif name == "shifted":  # a reply 500 ms later
        i = next(i for i, ln in enumerate(out) if b'"edge_id":"output.reply"' in ln)
        doc = json.loads(out[i])
        doc["record"]["runtime_timestamp_ms"] += 500
        out[i] = msgspec.json.encode(doc) + b"\n"
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory,
              demo_replay_dir: Callable[[Path, int], Path]) -> Path:
    root = demo_replay_dir(tmp_path_factory.mktemp("replay-paired"), 8)
    lines = (root / "baseline.jsonl").read_bytes().splitlines(keepends=True)
    for name in ("baseline", "changed", "late", "shifted"):
        edited = _edit(lines, name)
        (root / f"{name}.jsonl").write_bytes(b"".join(edited))
        with (root / f"{name}.msgpack").open("wb") as f:  # the same lines, MessagePack
            for ln in edited:
                body = msgspec.msgpack.encode(json.loads(ln))
                f.write(struct.pack(">I", len(body)) + body)
    return root


def _replay(root: Path, timeline: str, spec: str, out: bool) -> tuple[int, bytes, bytes, dict]:
    report = root / f"{timeline}-{spec}-{out}.report.json"
    extra = ["--timeline-out", str(root / f"{timeline}-{spec}.cand.jsonl")] if out else []
    done = subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", "replay",
                           timeline, "--spec", spec, "--report", str(report), *extra],
                          capture_output=True, timeout=300, check=False, cwd=root)
    doc = json.loads(report.read_text()) if report.exists() else {}
    doc.pop("recording", None)  # the file's name
    return done.returncode, done.stdout, done.stderr, doc


@pytest.mark.parametrize(("name", "spec", "out"), [
    ("baseline", "v1.yaml", False), ("baseline", "v2.yaml", False),
    ("changed", "v1.yaml", False), ("late", "v1.yaml", False), ("shifted", "v1.yaml", True)])
def test_bytes_first_gives_the_live_comparisons_report(workspace: Path, name: str, spec: str,
                                                       out: bool) -> None:
    paired = _replay(workspace, f"{name}.jsonl", spec, out)
    live = _replay(workspace, f"{name}.msgpack", spec, out)
    assert paired == live
    code, stdout, _, doc = paired
    if (name, spec) == ("baseline", "v1.yaml"):
        assert code == 0 and doc["passed"], stdout
    elif name == "changed" or spec == "v2.yaml":
        assert code == 1 and not doc["passed"], stdout  # the differences are found
    elif name == "shifted":  # TIMING is reported; it fails only with a threshold
        assert code == 0 and b"moved by -500 ms" in stdout, stdout
    if name == "late":
        assert b"records arrived after their turn was compared" in stdout


def _engine(root: Path, timeline: str) -> ReplayEngine:
    gd = compile_spec(load_spec(root / "v1.yaml"))
    return ReplayEngine(load_recording(root / timeline, stream=True), gd,
                        registry=demo_registry(), session_factory=node_session,
                        options=ReplayOptions(mode=ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS,
                                              provider_node_types=DEMO_PROVIDER_TYPES,
                                              lean=True))


@pytest.mark.parametrize("timeline", ["baseline.jsonl", "changed.jsonl", "late.jsonl"])
def test_a_faithful_replay_is_decided_by_bytes_alone(workspace: Path, timeline: str) -> None:
    engine = _engine(workspace, timeline)
    result = asyncio.run(engine.finish())
    engine.recording.close()
    paired = engine._paired
    assert isinstance(paired, PairedComparison)
    if timeline == "baseline.jsonl":  # every pair the same, plain: no comparison ran
        assert paired.diverged is None and paired.shape.plain
        assert paired._rerun is None and result.report.passed and not result.notes
    else:  # the recording differs from some line on: the comparison ran from there
        assert paired.diverged is not None and paired.diverged > 0
        assert paired._rerun is not None
        assert not result.report.passed  # (the late transcript misses its turn's text)
        assert bool(result.notes) is (timeline == "late.jsonl")  # the late record
