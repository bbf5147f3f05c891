"""CPU headroom at admission and capacity-control events in the timeline (F-172).

``rspp serve --max-cpu-percent 4 --cpu-resume-percent 1``: the runtime samples its own
CPU time (every thread) over a 1 s window; at 4 % of its CPUs the CPU threshold trips
and new turns are deferred (``capacity:cpu:LOAD/4``) until the load falls to 1 %
(whole percents, rounded down: below 2 %). The thresholds are low so that the burners
reach them on a heavily loaded machine too.

The load is real: the pipeline's custom ``python:`` node (declaring its ``ports:`` so the
control plane, which runs no node code, checks the graph) starts eight threads in the
server process that hash a megabyte over and over (hashlib releases the GIL, so they
load every CPU) when it is asked ``burn``, until the test creates their stop file. The
test never guesses when the load is high: it waits for ``/metrics`` to show the
threshold tripped (``rspp_capacity_tripped{resource="cpu"} 1``), and the hysteresis
holds the decision there while the burners run (eight threads keep the process far
above 1 % on a loaded machine: the scheduler shares the CPUs by thread), so the next turn
is deferred; after the stop file it waits for the threshold to clear and the next turn
opens (starting a session costs a few percent of a second; an idle runtime about 1 %).

Each trip and clear is a capacity-control event: counted on ``/metrics``
(``rspp_capacity_events_total{resource,decision}``) and recorded in every live
session's timeline as a session-scoped RK-25 ``defer``/``admit`` signal whose reason
names the resource, load, threshold and decision. The deferred session's timeline holds
the trip before its deferred turn and the clear before its next turn, validates against
the wire contract, and replays (the events are load, not logic: TIMING at most).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.transports import TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import AskingSession, ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

KEY = "cpu-headroom-admin-key"

BURNER = textwrap.dedent('''
    import hashlib
    import os
    import threading

    from rspp import Node

    BLOCK = b"\\0" * (1 << 20)


    def burn(stop_file):
        while not os.path.exists(stop_file):
            hashlib.sha256(BLOCK).digest()  # releases the GIL: a load on every CPU


    class Burner(Node):
        """``burn``: eight threads load the CPUs until ``stop_file`` exists; else echo."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}
        scope = "turn"

        def process(self, event, port):
            text = str(event.payload or "").strip()
            if text == "burn":
                for _ in range(8):
                    threading.Thread(target=burn, args=(os.environ["BURN_STOP_FILE"],),
                                     daemon=True).start()
                text = "burning"
            return event.derive("text", f"echo {text}", final=True,  # the reply ends here
                                attrs={**(event.attrs or {}), "eos": True})
''')

SPEC = """name: cpu-burn
version: 1.0.0
profile: simple/v1
budgets: {turn_ms: 600000, node_ms: 600000, path_ms: 600000, edge_ms: 600000}
nodes:
  - {id: burner, type: "python:cpu_burner:Burner",
     ports: {inputs: [{name: text, type: text}], outputs: [{name: text, type: text}]}}
edges:
  - {from: input.text, to: burner.text}
  - {from: burner.text, to: output.text}
"""


async def _tripped(http: httpx.AsyncClient, sample: Callable[..., float | None],
                   value: int) -> str:
    """Poll /metrics until the CPU threshold's tripped gauge reads ``value``; that scrape."""
    while True:
        text = (await http.get("/metrics")).text
        if sample(text, "rspp_capacity_tripped", resource="cpu") == value:
            return text
        await asyncio.sleep(0.25)  # light polling: the scrapes are CPU the runtime spends


async def _answered(session: AskingSession, text: str) -> str:
    """Ask; once the turn opened, wait for it to close (``open``), else the deferral."""
    got = await session.ask(text)
    if got == "open":
        async for ev in session.events:
            if isinstance(ev, TurnEvent) and ev.state == "close":
                break
    return got


async def _scenario(url: str, stop_file: Path, ask: Callable[..., Any],
                    sample: Callable[..., float | None]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        burner, asker = await ask(url, KEY, "cpu-burn"), await ask(url, KEY, "cpu-burn")
        await _tripped(http, sample, 0)  # starting the sessions may have loaded it
        got["burn"] = await _answered(burner, "burn")
        got["hot"] = await _tripped(http, sample, 1)
        got["deferred"] = await _answered(asker, "what is the date")
        got["deferred_metrics"] = (await http.get("/metrics")).text
        await asyncio.to_thread(stop_file.touch)  # the burners stop
        got["cool"] = await _tripped(http, sample, 0)
        got["again"] = await _answered(asker, "what is the date")
        got["sid"] = asker.sid
        for s in (burner, asker):
            await s.client.close()
    return got


def _rspp(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def test_cpu_headroom_defers_turns_while_the_runtime_is_hot_and_records_capacity_events(
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    asking_session: Callable[..., Any], metric_sample: Callable[..., float | None]
) -> None:
    sample = metric_sample
    (tmp_path / "cpu_burner.py").write_text(BURNER)
    spec = tmp_path / "burn.yaml"
    spec.write_text(SPEC)
    stop_file = tmp_path / "stop-burning"
    extra = {"BURN_STOP_FILE": str(stop_file),  # the server imports the burner from here
             "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path),
                                                       os.environ.get("PYTHONPATH")) if p)}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}, **extra}
    refused = serve_process(str(spec), "--api-key", KEY, "--max-cpu-percent", "10",
                            "--cpu-resume-percent", "10", env=extra)
    _, err = refused.proc.communicate(timeout=60)
    assert refused.proc.returncode == 2 and "--cpu-resume-percent" in err, err

    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines),
                        "--record-level", "L2", "--max-cpu-percent", "4",
                        "--cpu-resume-percent", "1", env=extra).wait_ready()
    try:
        got = asyncio.run(asyncio.wait_for(_scenario(srv.url, stop_file, asking_session,
                                                     sample), 180))
    finally:
        stop_file.touch()
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err

    assert got["burn"] == "open"
    hot = got["hot"]
    assert sample(hot, "rspp_capacity_threshold", resource="cpu") == 4
    assert (sample(hot, "rspp_capacity_load", resource="cpu") or 0) > 1
    assert re.search(r"capacity:cpu:\d+/4:interactive", got["deferred"]), got["deferred"]
    m = got["deferred_metrics"]
    assert sample(m, "rspp_capacity_deferrals_total", threshold="cpu") == 1
    trips = sample(m, "rspp_capacity_events_total", resource="cpu", decision="defer")
    assert trips is not None and trips >= 1
    cool = got["cool"]
    assert sample(cool, "rspp_capacity_events_total", resource="cpu", decision="admit") == trips
    assert (sample(cool, "rspp_capacity_load", resource="cpu") or 0) <= 1
    assert got["again"] == "open"

    timeline = timelines / f"{got['sid']}.jsonl"
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    marks = [(i, r) for i, r in enumerate(records)
             if str(r.get("reason", "")).startswith("capacity_control:cpu:")]
    assert marks, records
    for _, r in marks:  # a session-scoped admission signal naming load, threshold, decision
        assert (r["emitted_by"], r["event_scope"], r.get("turn_id")) == ("RK-25", "session",
                                                                         None), r
        load, decision = re.fullmatch(r"capacity_control:cpu:(\d+)/4:(defer|admit)",
                                      r["reason"]).groups()  # type: ignore[union-attr]
        assert r["signal"] == decision
        assert int(load) >= 4 if decision == "defer" else int(load) <= 1
    decisions = [r["signal"] for _, r in marks]  # trips and clears alternate
    assert all(x != y for x, y in itertools.pairwise(decisions)), decisions
    (at, outcome), = [(i, r) for i, r in enumerate(records) if r.get("outcome_kind") == "defer"]
    assert outcome["reason"].startswith("capacity:cpu:")
    opened = [i for i, r in enumerate(records) if r.get("signal") == "turn_open"]
    tripped_before = [i for i, r in marks if i < at]
    assert tripped_before and records[tripped_before[-1]]["signal"] == "defer"
    cleared = [i for i, r in marks if at < i and r["signal"] == "admit"]
    assert cleared and len(opened) == 1 and cleared[0] < opened[0], (marks, opened)

    valid = _rspp("contracts", "validate", str(timeline), env=env)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    report = tmp_path / "replay.json"
    out = _rspp("replay", str(timeline), "--spec", str(spec), "--mode", "playback",
                "--report", str(report), env=env)
    doc = json.loads(report.read_text())
    assert all(doc["divergences"][c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")
               ), doc["findings"]
    assert out.returncode == 0, out.stdout + out.stderr
