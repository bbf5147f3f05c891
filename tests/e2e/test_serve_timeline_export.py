"""Durable timeline export through ``rspp serve`` during an outage (F-154, F-176).

``rspp serve --timeline-export-url URL --timeline-buffer 64 --record-level L2``: every
session's timeline is POSTed to a collector (a real HTTP server on loopback) instead of a
file. The collector is down (503) while a typed question is answered with speech: the
turn opens, commits and closes for the client all the same (the local append never
waits for the export); the reply audio fills the session's buffer, so the recorder
downgrades L2 -> L1 -> L0, one recorded step at a time. Once the collector is back, the
exporter's retry gets through and an ``export_recovered`` marker follows; the exported
timeline holds the downgrade markers, the turn's plan, its lifecycle signals and its
OR-02 evidence (the control evidence a replay needs), up to the session's ``ended``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import TEXT_VOICE_SPEC
from rspp.transports import AudioOut, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "export-e2e-admin-key"


class Collector:
    """The export endpoint: 503 while ``down`` is set, else keeps each batch's lines."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.down.set()
        self.refused = 0
        self.lines: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.lock = threading.Lock()

    def handle(self, body: bytes) -> int:
        with self.lock:
            if self.down.is_set():
                self.refused += 1
                return 503
            for raw in body.splitlines():
                line = json.loads(raw)
                self.lines.append(line)
                if line["kind"] == "control_signal" and line["record"]["signal"] == "ended":
                    self.ended.set()
            return 204


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    state = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(state.handle(body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/ingest"
    server.shutdown()
    thread.join()


def test_an_export_outage_never_blocks_the_turn_and_downgrades_keeping_control_evidence(
    serve_process: Callable[..., ServeProcess], collector: tuple[Collector, str],
    tmp_path: Path
) -> None:
    state, url = collector
    spec = tmp_path / "voice.yaml"
    spec.write_text(TEXT_VOICE_SPEC)
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--record-level", "L2", "--timeline-export-url",
                        url, "--timeline-buffer", "64").wait_ready()
    srv.set_policy(KEY, "acme", {"recording_level": "L2"})  # the plans keep L2

    async def session() -> tuple[str, list[str], int]:
        target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                     pipeline_name="text-voice")
        states: list[str] = []
        audio = 0
        async with await LiveClient.connect(target.url, token=target.token) as client:
            await client.send_text("tell me about the weather")
            async for ev in client.events():
                if isinstance(ev, AudioOut):
                    audio += 1
                if isinstance(ev, TurnEvent):
                    states.append(ev.state)
                    if ev.state == "close":
                        break
            # the whole turn ran while the export was refused
            assert state.down.is_set() and state.refused >= 1 and not state.lines
            state.down.clear()  # the collector is back
            await client.end()
            async for _ in client.events():
                pass
        return target.session_id, states, audio

    sid, states, audio = asyncio.run(asyncio.wait_for(session(), 120))
    assert states == ["open", "commit", "close"] and audio > 10, (states, audio)
    assert state.ended.wait(60), "the session's timeline never reached the collector"

    lines = [ln for ln in state.lines if ln["record"].get("session_id") in (sid, None)]
    signals = [(ln["record"]["signal"], ln["record"].get("reason")) for ln in lines
               if ln["kind"] == "control_signal"]
    downgrades = [r for s, r in signals if s == "recording_level_downgraded"]
    assert downgrades[:2] == ["buffer_pressure:L2->L1", "buffer_pressure:L1->L0"], signals
    for name in ("turn_open", "commit", "close", "ended"):
        assert any(s == name for s, _ in signals), (name, signals)
    kinds = {ln["kind"] for ln in lines}
    assert {"resolved_turn_plan", "or02_evidence", "turn_transition"} <= kinds, kinds
    recovered = [ln["record"]["reason"] for ln in lines if ln["kind"] == "event_record"
                 and str(ln["record"].get("reason", "")).startswith("export_recovered:")]
    assert recovered, "no eventual-consistency marker after the outage"
    code, _, err = srv.terminate()
    assert code == 0, err
