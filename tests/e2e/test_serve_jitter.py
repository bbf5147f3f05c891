"""``rspp serve`` buffers a bad network's audio by the spec's jitter profile (F-087).

One served spec gives the WebSocket transport a concealing profile and the telephony
transport a dropping one; a WebSocket client (MessagePack: every frame numbered) and a
phone carrier (``media.chunk``) send the same impaired stream: frames swapped,
duplicated, lost and late. The stats event, the recorded ingress audio and the
timeline's jitter records show each profile at work, and the WebSocket session
replays without divergence.

The test profiles wait long in wall time (2 s), so the reorder window alone decides
when a missing frame is given up: the outcome does not depend on the machine's load.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from rspp.client import CarrierCall, LiveClient, session_url
from rspp.testing import Impairment, with_patient_budgets
from rspp.transports import Stats, mulaw_encode

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "jitter-e2e-admin-key"
VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"
#: 5/6 swapped, 7 twice, 10 and 20-22 never, 30 after 34 (too late for its place)
ORDER = Impairment(40, swap=((5, 6),), duplicate=(7,), lose=(10, 20, 21, 22),
                   late={30: 34}).order()
PROFILE = ("mode: fixed, target_ms: 2000, min_ms: 20, max_ms: 2000, "
           "reorder_window_frames: 3, conceal: silence, conceal_max_frames: 2")
TRANSPORT = f"""
transport:
  jitter: {{{PROFILE}, loss: conceal}}
  jitter_by_transport:
    telephony: {{{PROFILE}, loss: drop}}
"""


def frame(k: int, samples: int) -> bytes:
    """Frame ``k``: a quiet constant level the VAD takes for silence, unique per frame."""
    return np.full(samples, 3 * (k + 1), dtype=np.int16).tobytes()


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def ingress_audio(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(ln["payload"]["data"]) for ln in lines
                    if ln["kind"] == "event_record"
                    and ln["record"].get("edge_id") == "input.audio")


def jitter_notes(lines: list[dict[str, Any]]) -> list[str]:
    return [ln["record"]["reason"] for ln in lines
            if ":transport_jitter:" in ln["record"].get("event_id", "")]


async def _sessions(url: str) -> tuple[str, Stats, str, str]:
    async with httpx.AsyncClient(base_url=url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as cp:
        async def route() -> dict[str, str]:
            r = await cp.post("/v1/sessions/route", json={"tenant_id": "acme",
                                                           "pipeline_name": "voice-assistant"})
            assert r.status_code == 201, r.text
            return dict(r.json())

        ws_route = await route()
        ws_sid = ws_route["session_id"]
        async with await LiveClient.connect(session_url(ws_route["endpoint"], ws_sid),
                                            token=ws_route["token"], msgpack=True) as client:
            for k in ORDER:
                await client.send_audio(frame(k, 320), seq=k)
            await client.end()
            stats = [e async for e in client.events() if isinstance(e, Stats)]

        phone = await route()
        stream = url.replace("http://", "ws://") + "/v1/telephony/twilio/stream"
        call = await CarrierCall.connect(stream, {"token": phone["token"],
                                                  "session_id": phone["session_id"]})
        try:
            for k in ORDER:  # Twilio numbers chunks from 1
                await call.media(mulaw_encode(frame(k, 160)), chunk=k + 1)
            await call.hang_up()
            async with asyncio.timeout(60):
                await call.closed.wait()
        finally:
            await call.close()
        # both connections ended before their streams closed: their counters are in
        metrics = (await cp.get("/metrics")).text
    return ws_sid, stats[-1], phone["session_id"], metrics


def test_served_transports_reorder_and_conceal_or_drop_by_their_jitter_profile(
    serve_process: Callable[..., ServeProcess], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    spec = tmp_path / "voice.yaml"
    spec.write_text(with_patient_budgets(VOICE.read_text()) + TRANSPORT)
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines)).wait_ready()
    ws_sid, st, phone_sid, metrics = asyncio.run(_sessions(srv.url))
    code, _, err = srv.terminate()  # its timelines are complete once it has exited
    assert code == 0, err

    # WebSocket (conceal): the swap is undone, the duplicate and the late frame dropped,
    # 10, 30 and two of 20-22 concealed with silence, 22 dropped: 39 of 40 frames
    assert (st.out_of_order_frames, st.reordered_frames, st.duplicate_frames,
            st.too_late_frames) == (2, 1, 1, 1)
    assert (st.lost_frames, st.concealed_frames, st.discontinuities) == (5, 4, 1)
    assert st.media_in_ms == 39 * 20 and st.jitter_profile == "balanced"
    assert st.jitter_hold_max_ms <= 2000  # never more than the depth
    ws = records(timelines / f"{ws_sid}.jsonl")
    silence = bytes(640)
    expected = b"".join(
        silence if k in (10, 20, 21, 30) else frame(k, 320)
        for k in range(40) if k != 22)
    assert ingress_audio(ws)[:len(expected)] == expected
    assert "lost seq 20..22: concealed 2 (silence), dropped 1" in jitter_notes(ws)
    report = timelines / f"{ws_sid}.replay.json"
    out = rspp_cli("replay", str(timelines / f"{ws_sid}.jsonl"), "--spec", str(spec),
                   "--mode", "playback", "--report", str(report))
    divergences = json.loads(report.read_text())["divergences"]
    assert all(divergences[c] == 0 for c in ("ORDERING", "PLAN", "OUTCOME", "AUTHORITY")), \
        out.stdout

    # the runtime's metrics, by transport and outcome
    for line in ('rspp_ingress_jitter_frames_total{outcome="concealed",transport="websocket"} 4.0',
                 'rspp_ingress_jitter_frames_total{outcome="reordered",transport="websocket"} 1.0',
                 'rspp_ingress_jitter_frames_total{outcome="lost",transport="telephony"} 5.0',
                 'rspp_ingress_jitter_frames_total{outcome="discontinuity",transport="telephony"} '
                 '3.0',
                 'rspp_ingress_jitter_hold_max_seconds_count{transport="telephony"} 1.0'):
        assert line in metrics, line

    # telephony (drop): the same impairments, each gap dropped with a discontinuity
    phone = records(timelines / f"{phone_sid}.jsonl")
    notes = jitter_notes(phone)
    assert [n for n in notes if n.startswith("lost")] == [
        "lost seq 11..11: concealed 0 (silence), dropped 1",
        "lost seq 21..23: concealed 0 (silence), dropped 3",
        "lost seq 31..31: concealed 0 (silence), dropped 1"]
    summary = next(n for n in notes if n.startswith("connection"))
    assert summary.startswith(f"connection profile robust: frames {len(ORDER)}, out_of_order 2, "
                              "reordered 1, duplicates 1, too_late 1, lost 5, concealed 0, "
                              "discontinuities 3"), summary
    marked = [ln for ln in phone if ln["record"].get("discontinuity_id")
              and ln["record"].get("edge_id") == "input.audio"]
    assert len(marked) == 3
    # 35 frames of 20 ms reached the pipeline (resampled to 16 kHz; a resampler's tail aside)
    assert 33 * 640 <= len(ingress_audio(phone)) <= 35 * 640
