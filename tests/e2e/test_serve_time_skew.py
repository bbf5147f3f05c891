"""``rspp serve`` keeps a session's time correct when its clocks misbehave (NF-018).

A live session over the WebSocket, against a real ``rspp serve`` process whose wall
clock a test can step: the server runs under libfaketime (Debian's ``faketime``
package, ``LD_PRELOAD``) reading its offset from a file (``FAKETIME_TIMESTAMP_FILE``),
with the monotonic clock left
alone (``DONT_FAKE_MONOTONIC``): the product reads the system clock as it always does,
and the OS answers with a stepped wall clock, as an NTP step would. No product code
knows about the injection. libfaketime re-reads the file at most once a second
(``FAKETIME_CACHE_DURATION=1``; re-reading it at every clock read also slows Python's
GIL hand-offs, which wait on a clock, to a crawl), and leaves the waits on the monotonic
clock alone (``FAKETIME_FORCE_MONOTONIC_FIX=0``; its "fix" of those makes the GIL
hand-offs of a threaded Python process take seconds). The test waits until the
server's ``Date`` header shows a step before it goes on.

The session then sees, in order:

* a burst: 200 ms of audio at once, ahead of real time but within the flood allowance:
  taken, nothing to correct;
* a stall: the client stops sending for ``GAP_S`` (after a typed question's reply has
  shown the burst was taken), then resumes: the first frame after the gap arrives at
  least ``GAP_S`` - 200 ms behind its media time, beyond ``--media-skew-ms``: it is
  counted late, re-anchors the mapping and is noted (``media_skew``) on the timeline;
* the wall clock steps 5 s forward: the session's wall stamps are corrected forward
  (``clock_skew`` note, ``corrected_forward``);
* the wall clock steps an hour back: absorbed, the wall stamps never go back
  (``clock_skew`` note, ``absorbed_backward``).

After each, a typed question is answered (the session keeps working); the timeline is
contract-valid and replays without divergence; the metrics count what happened.

The outcome does not depend on the machine's load: the gap is at least ``GAP_S`` of
server time by construction (the reply before it came after the burst was taken), and
the clock steps are seen by every record stamped after the file was written.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from rspp.client import LiveClient, session_url
from rspp.testing import DOMAIN_STT, PATIENT_BUDGETS, SILENCE_VAD
from rspp.transports import ReplyText, Stats

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "skew-e2e-admin-key"
#: the client's stall: far beyond the media-to-runtime bound (200 ms)
GAP_S = 1.0
MEDIA_SKEW_MS = 200
MAX_SKEW_MS = 250
#: speech in (VAD -> STT -> transcript) and typed questions answered (LLM -> reply text)
SPEC = f"""name: skew-assistant
version: 1.0.0
profile: simple/v1
{PATIENT_BUDGETS}
providers:
  stt: {DOMAIN_STT}
  llm: {{primary: local}}
nodes:
  - {{id: vad, type: vad, {SILENCE_VAD}}}
  - {{id: stt, type: stt}}
  - {{id: llm, type: llm}}
edges:
  - {{from: input.audio, to: vad.audio}}
  - {{from: vad.audio, to: stt.audio}}
  - {{from: vad.vad, to: stt.vad}}
  - {{from: stt.final, to: output.transcript}}
  - {{from: input.text, to: llm.text}}
  - {{from: llm.text, to: output.text}}
"""
QUESTIONS = ("what is your name", "what time is it", "tell me a joke", "goodbye")


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if found:
        return found[0]
    message = ("libfaketime not found: install Debian's package (apt-get install faketime); "
               "the test steps the server's wall clock with it")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def frame(k: int) -> bytes:
    """20 ms at 16 kHz, a quiet level the VAD takes for silence."""
    return np.full(320, 3 * (k + 1), dtype=np.int16).tobytes()


async def _answer(client: LiveClient, question: str) -> str:
    """Ask ``question`` (typed) and wait for its whole reply text."""
    await client.send_text(question)
    async for ev in client.events():
        if isinstance(ev, ReplyText) and ev.final:
            return ev.text
    raise AssertionError(f"the session ended before answering {question!r}")


async def _step_clock(cp: httpx.AsyncClient, clock: Path, offset_s: int) -> None:
    """Step the server's wall clock to ``offset_s`` from real time, and wait until the
    server shows it: the ``Date`` header of its responses (read from its wall clock, once
    a second) is within 2 s of the new offset (libfaketime re-reads the file at most once
    a second: ``FAKETIME_CACHE_DURATION``)."""
    await asyncio.to_thread(clock.write_text, f"{offset_s:+d}\n")
    while True:
        r = await cp.get("/healthz")
        shown = parsedate_to_datetime(r.headers["date"]).timestamp()
        if abs(shown - time.time() - offset_s) < 2.0:
            return
        await asyncio.sleep(0.05)  # polling the server's clock, not waiting for luck


async def _session(url: str, clock: Path) -> tuple[str, list[str], Stats, str]:
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 headers={"Authorization": f"Bearer {KEY}"}) as cp:
        # the tenant records at L2 (every turn's plan keeps the ingress audio a replay needs)
        policy = await cp.post("/v1/configs/policy/acme",
                               json={"body": {"recording_level": "L2"}})
        assert policy.status_code < 300, policy.text
        r = await cp.post("/v1/sessions/route", json={"tenant_id": "acme",
                                                       "pipeline_name": "skew-assistant"})
        assert r.status_code == 201, r.text
        route = r.json()
        sid = route["session_id"]
        replies: list[str] = []
        async with await LiveClient.connect(session_url(route["endpoint"], sid),
                                            token=route["token"]) as client:
            for k in range(10):  # a burst: 200 ms of audio at once
                await client.send_audio(frame(k))
            # its reply comes after every frame sent before the question was taken
            replies.append(await _answer(client, QUESTIONS[0]))
            await asyncio.sleep(GAP_S)  # the injected stall (not a wait for anything)
            for k in range(10, 20):
                await client.send_audio(frame(k))
            replies.append(await _answer(client, QUESTIONS[1]))
            await _step_clock(cp, clock, +5)  # the wall clock jumps 5 s ahead
            replies.append(await _answer(client, QUESTIONS[2]))
            await _step_clock(cp, clock, -3600)  # and then an hour back
            replies.append(await _answer(client, QUESTIONS[3]))
            await client.end()
            stats = [e async for e in client.events() if isinstance(e, Stats)]
        metrics = (await cp.get("/metrics")).text
    return sid, replies, stats[-1], metrics


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x)["record"] for x in path.read_text().splitlines()
            if json.loads(x).get("kind") in ("event_record", "control_signal")]


def _notes(records: list[dict[str, Any]], kind: str) -> list[str]:
    return [r["reason"] for r in records if f":{kind}:" in r.get("event_id", "")]


def test_served_session_corrects_wall_clock_steps_and_re_anchors_late_audio(
    serve_process: Callable[..., ServeProcess], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    lib = _libfaketime()
    spec = tmp_path / "skew.yaml"
    spec.write_text(SPEC)
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    timelines = tmp_path / "timelines"
    srv = serve_process(
        str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", "--api-key", KEY,
        "--timeline-dir", str(timelines), "--max-skew-ms", str(MAX_SKEW_MS),
        "--media-skew-ms", str(MEDIA_SKEW_MS), "--lease-ttl-ms", "60000", "--record-level", "L2",
        env={"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": str(clock),
             "FAKETIME_CACHE_DURATION": "1", "DONT_FAKE_MONOTONIC": "1",
             "FAKETIME_FORCE_MONOTONIC_FIX": "0"}).wait_ready()
    sid, replies, st, metrics = asyncio.run(_session(srv.url, clock))
    code, _, err = srv.terminate()  # its timeline is complete once it has exited
    assert code == 0, err

    # the session kept working: every question was answered
    assert len(replies) == len(QUESTIONS) and all(replies), replies
    timeline = timelines / f"{sid}.jsonl"
    records = _records(timeline)
    assert len([r for r in records if r.get("signal") == "commit"]) == len(QUESTIONS)

    # the stall: the first frame after it is late, re-anchored, noted
    late = [n for n in _notes(records, "media_skew") if n.startswith("late frame")]
    first = next(n for n in late if n.startswith("late frame at media 200 ms:"))
    behind = int(re.search(r": (\d+) ms behind", first).group(1))  # type: ignore[union-attr]
    assert behind >= GAP_S * 1000 - 200, first
    assert f"(bound {MEDIA_SKEW_MS} ms), mapping re-anchored on it" in first
    summary = next(n for n in _notes(records, "media_skew") if n.startswith("connection"))
    assert summary.startswith("connection media-to-runtime mapping: frames 20, p99 "), summary
    assert f"bound {MEDIA_SKEW_MS} ms, late (re-anchored) {len(late)}" in summary
    assert st.late_frames == len(late) and st.media_skew_max_ms >= behind - 1

    # the clock steps: one correction each, in order, beyond the bound
    skews = _notes(records, "clock_skew")
    assert [s.split(":")[0] for s in skews] == ["corrected_forward", "absorbed_backward"], skews
    ahead = int(re.search(r"by (\d+) ms", skews[0]).group(1))  # type: ignore[union-attr]
    back = int(re.search(r"by (\d+) ms", skews[1]).group(1))  # type: ignore[union-attr]
    assert 4_900 <= ahead <= 5_100 and 3_604_900 <= back <= 3_605_100, skews
    assert all(s.endswith(f"(max_skew_ms {MAX_SKEW_MS})") for s in skews)
    # wall stamps: never back, the forward step taken once, the hour back never seen
    walls = [r["wall_clock_timestamp_ms"] for r in records]
    assert walls == sorted(walls)
    runtimes = [r["runtime_timestamp_ms"] for r in records]
    span = (max(runtimes) - min(runtimes))
    assert 5_000 - MAX_SKEW_MS <= walls[-1] - walls[0] - span <= 5_000 + 1_000

    # the runtime's metrics count them
    assert 'rspp_ingress_media_skew_seconds_count{transport="websocket"} 20.0' in metrics
    assert (f'rspp_ingress_media_late_frames_total{{transport="websocket"}} {len(late)}.0'
            in metrics)
    for action in ("corrected_forward", "absorbed_backward"):
        assert f'rspp_clock_skew_corrections_total{{action="{action}"}} 1.0' in metrics

    # contract-valid, and a replay (on its own clock) reproduces the session
    rspp_cli.validates_and_replays(timeline, spec)
