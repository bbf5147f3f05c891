"""``rspp serve``'s ``shed`` warnings are bounded per session (NF-006, NF-013).

One ``rspp serve`` (embedded control plane on SQLite) serves the overload pipeline: its
``meter`` node is slow for its first 70 input frames, so the drop-newest edge in front of
it sheds dozens of frames while a spoken question arrives in real time over a WebSocket.
The session's timeline has every shed (RK-25 ``shed`` signals); the server's stderr has a
``shed`` WARNING line for the first five of each 10 s window of the session and one
summary line counting the rest by edge - every shed is a line or a count, and the log does
not grow with the overload. The turn is still answered.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rspp.client import LiveClient, TalkOptions, route_session, talk
from rspp.transports import read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "shed-log-e2e-admin-key"
EDGE = "input.audio->meter.audio"
#: shed lines a session logs one by one in a window (``rspp serve``'s default)
LINES = 5
_HELD = re.compile(r"^session (\S+): (\d+) more shed not logged one by one \((.*)\)$")


def test_sheds_of_a_served_session_are_a_few_lines_and_a_summary_counted_by_edge(
    serve_process: Callable[..., ServeProcess], overload_pipeline: Callable[[Path, str], Path],
    spoken: dict[str, Path], tmp_path: Path
) -> None:
    spec = overload_pipeline(tmp_path, "drop")
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        cwd=tmp_path).wait_ready()
    pcm, rate = read_wav(spoken["question"])

    async def ask() -> tuple[str, float, list[list[str]]]:
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="overload")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        async with await LiveClient.connect(target.url, token=target.token,
                                            sample_rate=rate) as client:
            result = await talk(client, pcm, TalkOptions(quiet_s=1.0, max_wait_s=120))
        return target.session_id, loop.time() - t0, [t.reply for t in result.turns.values()]

    sid, elapsed_s, replies = asyncio.run(asyncio.wait_for(ask(), 240))
    assert any(replies), replies  # the overloaded session still answered
    code, _, err = srv.terminate()
    assert code == 0, err
    records = [json.loads(x)["record"] for x in (timelines / f"{sid}.jsonl").read_text()
               .splitlines()]
    sheds = [r for r in records if r.get("signal") == "shed"]
    assert len(sheds) > 2 * LINES, len(sheds)  # the overload shed well past the first lines
    assert {r["edge_id"] for r in sheds} == {EDGE}
    lines = [ln.strip() for ln in err.splitlines()]
    logged = lines.count("shed")
    held = 0
    for ln in lines:
        m = _HELD.match(ln)
        if m:
            assert m.group(1) == sid and m.group(3) == f"{EDGE}: {m.group(2)}", ln
            held += int(m.group(2))
    assert held, lines
    assert logged + held == len(sheds), (logged, held, len(sheds))
    # at most LINES lines a window: one window per 10 s of the session (and the first)
    assert LINES <= logged <= LINES * (1 + int(elapsed_s // 10)), (logged, elapsed_s)
