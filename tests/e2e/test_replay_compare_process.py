"""``rspp replay --compare process``: the comparison in a second process (issue 12).

The candidate lines go through a pipe to a forked child that reads the recording itself
and compares; the report must be the in-process one byte for byte (a passing replay,
one against a changed spec and one of a recording with a changed reply), and a child
that dies makes the replay fail with one line, never hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rspp.contracts import DivergencePolicy, ReplayMode, ReplayTolerances
from rspp.replay import ReplayError
from rspp.replay._compare_process import CompareProcess
from rspp.replay._line_fetcher import LineFetcher

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory,
              demo_replay_dir: Callable[[Path, int], Path]) -> Path:
    root = demo_replay_dir(tmp_path_factory.mktemp("replay-compare"), 6)
    raw = (root / "baseline.jsonl").read_bytes().splitlines(keepends=True)
    # a recording whose second reply differs (OUTCOME divergences in that turn)
    replies = [i for i, ln in enumerate(raw) if b'"text":"heard: ' in ln]
    raw[replies[1]] = raw[replies[1]].replace(b'"text":"heard: ', b'"text":"said: ', 1)
    (root / "changed.jsonl").write_bytes(b"".join(raw))
    return root


def rspp(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, timeout=300, check=False, cwd=cwd)


@pytest.mark.parametrize(("timeline", "spec", "exit_code"), [
    ("baseline.jsonl", "v1.yaml", 0), ("baseline.jsonl", "v2.yaml", 1),
    ("changed.jsonl", "v1.yaml", 1)])
def test_the_report_is_the_in_process_one_byte_for_byte(
        workspace: Path, timeline: str, spec: str, exit_code: int) -> None:
    runs = {}
    for how in ("process", "inline"):
        report = workspace / f"{timeline}-{spec}-{how}.json"
        runs[how] = rspp("replay", timeline, "--spec", spec, "--compare", how,
                         "--report", str(report), cwd=workspace)
        assert runs[how].returncode == exit_code, runs[how].stderr
    assert runs["process"].stdout == runs["inline"].stdout
    assert runs["process"].stderr == runs["inline"].stderr == b""
    piped = (workspace / f"{timeline}-{spec}-process.json").read_bytes()
    assert piped == (workspace / f"{timeline}-{spec}-inline.json").read_bytes()
    if exit_code:  # the divergences are there (the two ways could agree on nothing)
        assert b'"OUTCOME": 0' not in piped


def test_a_killed_comparison_process_fails_the_replay_in_one_line(
        workspace: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "candidate.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rspp.cli import main; main()", "replay", "baseline.jsonl",
         "--spec", "v1.yaml", "--compare", "process", "--timeline-out", str(fifo)],
        cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # opening the FIFO returns once the replay opened it to write: the comparison
        # process was forked before that, and the replay cannot finish (its candidate
        # timeline is larger than the FIFO holds) until this test reads it
        with fifo.open("rb") as reader:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) == 1, children
            os.kill(int(children[0]), signal.SIGKILL)
            reader.read()  # the candidate lines until the replay ends (it closes the FIFO)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "comparison process was killed by signal 9" in lines[0], err
    assert b"Traceback" not in err


def test_an_exception_in_the_comparison_process_is_named(workspace: Path) -> None:
    with CompareProcess() as proc:
        piped = proc.session(LineFetcher(str(workspace / "baseline.jsonl"), ()),
                             tolerances=ReplayTolerances(), policy=DivergencePolicy(),
                             mode=ReplayMode.PLAYBACK_RECORDED_PROVIDER_OUTPUTS)
        # a candidate record that is no mapping fails the comparator in the child
        piped.add_actual({"kind": "event_record", "record": "not a record"})
        with pytest.raises(ReplayError, match=r"^the comparison process failed: "
                                              r"AttributeError: 'str' object has no "
                                              r"attribute 'get'$"):
            piped.finish()
        proc.process.join(60)
        assert proc.process.exitcode == 1


def test_a_bad_compare_choice_is_refused(workspace: Path) -> None:
    res = rspp("replay", "baseline.jsonl", "--spec", "v1.yaml", "--compare", "threads",
               cwd=workspace)
    assert res.returncode == 2
    assert res.stderr.decode().strip() == \
        "--compare 'threads': use one of auto, process, inline"
