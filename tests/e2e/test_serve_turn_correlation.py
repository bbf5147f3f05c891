"""``rspp serve``: a WebSocket session's events name its session and turn (F-013).

An embedded ``rspp serve`` (control plane on SQLite, offline assistant) takes a spoken
question and a barge-in on its reply from ``rspp talk``. The served session's timeline
holds to the correlation rule of docs/correlation.md (every event of a turn names it,
the speech that opened it included); the turn exemplars the server's ``/metrics`` gives
an OpenMetrics scraper name the timeline's turns; the recording replays with the same
ids and no divergence.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.testing import turn_correlation

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "turn-correlation-e2e-admin-key"
_EXEMPLAR = re.compile(r' # \{[^}]*turn_id="([^"]+)"')


def test_served_websocket_session_names_its_turns_everywhere(
    embedded_serve: Callable[..., tuple[ServeProcess, Path]], rspp_cli: RsppCli,
    spoken: dict[str, Path]
) -> None:
    srv, timelines = embedded_serve(KEY, "--record-level", "L2")
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    env["RSPP_API_KEY"] = KEY
    talk = rspp_cli("talk", "--server", srv.url, "--tenant", "acme", "--input",
                    str(spoken["question"]), "--barge-in", f"{spoken['interrupt']}@0.5",
                    env=env, timeout=180)
    assert talk.returncode == 0, talk.stdout + talk.stderr
    scraped = httpx.get(f"{srv.url}/metrics", timeout=30,
                        headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    plain = httpx.get(f"{srv.url}/metrics", timeout=30).text  # no Accept: Prometheus text
    assert " # {" not in plain
    code, _, err = srv.terminate()
    assert code == 0, err

    (timeline,) = timelines.glob("*.jsonl")
    lines: list[dict[str, Any]] = [json.loads(x) for x in timeline.read_text().splitlines()]
    sid = timeline.stem
    c = turn_correlation(lines, sid)
    assert c.problems == []
    said = re.findall(r"^turn (\S+): (commit|abort)", talk.stdout, re.M)
    assert [t for t, _ in said] == list(c.opened) and len(said) == 2, talk.stdout
    for tid in c.opened:
        assert {"vad", "stt", "tts"} <= c.nodes[tid], (tid, c.nodes)
        assert len([s for s in c.frames[tid] if s < c.opened[tid]]) >= 25  # its speech
    exemplars = set(_EXEMPLAR.findall(scraped.text))
    assert exemplars and exemplars <= set(c.opened), (exemplars, c.opened)

    spec = timelines.parent / "voice.yaml"
    replayed, report = timeline.with_suffix(".replayed.jsonl"), timeline.with_suffix(".json")
    res = rspp_cli("replay", str(timeline), "--spec", str(spec), "--report", str(report),
                   "--timeline-out", str(replayed), timeout=180)
    doc = json.loads(report.read_text())
    assert all(doc["divergences"][k] == 0 for k in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")
               ), doc["findings"]
    assert res.returncode == 0, res.stdout + res.stderr
    again = [json.loads(x) for x in replayed.read_text().splitlines()]
    named = sorted((ln["record"]["runtime_sequence"], ln["record"].get("turn_id") or "")
                   for ln in lines if ln["record"].get("edge_id") == "input.audio")
    assert named == sorted((ln["record"]["runtime_sequence"], ln["record"].get("turn_id") or "")
                           for ln in again if ln["record"].get("edge_id") == "input.audio")
