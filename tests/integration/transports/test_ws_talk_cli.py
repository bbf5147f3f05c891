"""``rspp talk`` (the real command, in a child process) against a live WebSocket server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from rspp.transports import read_wav, write_wav

from .conftest import REPO, assert_replays

pytestmark = pytest.mark.integration


async def rspp_async(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from rspp.cli import main; main()", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_talk_streams_a_question_and_writes_the_reply(serve, speech, issue,
                                                           tmp_path: Path) -> None:
    q = tmp_path / "q.wav"
    write_wav(q, speech["question"][0], 16000)
    reply = tmp_path / "r.wav"
    async with serve() as srv:
        code, out, err = await rspp_async("talk", "--server", srv.url("talk1"), "--token",
                                          issue("talk1"), "--input", str(q), "--output",
                                          str(reply), "--json")
    assert code == 0, out + err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["type"] == "ready"
    finals = [e["text"] for e in events if e["type"] == "transcript" and e["final"]]
    assert finals and "weather" in finals[0]
    assert any(e["type"] == "reply_text" for e in events)
    assert [e["state"] for e in events if e["type"] == "turn"][:3] == ["open", "commit", "close"]
    pcm, rate = read_wav(reply)
    assert rate == 16000 and len(pcm) > 16000  # > 0.5 s of reply audio
    timeline = srv.factory.timeline_for("talk1")
    assert timeline is not None
    assert_replays(timeline, srv.spec)


async def test_talk_barge_in_clears_and_answers_the_interruption(serve, speech, issue,
                                                                tmp_path: Path) -> None:
    q, i = tmp_path / "q.wav", tmp_path / "i.wav"
    write_wav(q, speech["question"][0], 16000)
    write_wav(i, speech["interrupt"][0], 16000)
    async with serve() as srv:
        code, out, err = await rspp_async("talk", "--server", srv.url("talk2"), "--token",
                                          issue("talk2"), "--input", str(q),
                                          "--barge-in", f"{i}@0.5", "--msgpack")
    assert code == 0, out + err
    assert "[cleared]" in out and "aborted: cancelled" in out, out
    assert out.count("you: ") >= 2 and "commit" in out


async def test_talk_exits_non_zero_when_refused(serve, speech, issue, tmp_path: Path) -> None:
    q = tmp_path / "q.wav"
    write_wav(q, speech["question"][0], 16000)
    async with serve() as srv:
        code, _out, err = await rspp_async("talk", "--server", srv.url("talk3"), "--token",
                                          issue("someone-else"), "--input", str(q))
    assert code == 1
    assert "refused (4403)" in err and "token is for session someone-else" in err
