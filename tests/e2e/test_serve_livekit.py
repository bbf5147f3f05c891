"""LiveKit rooms through ``rspp serve`` (F-083).

Without a LiveKit server here, the first test drives the join endpoint's checks through a
real ``rspp serve --livekit-url ...`` process (token, route attributes, refusals, the
CLI's own checks). The second runs the whole path against a real server when
``LIVEKIT_URL`` (+ ``LIVEKIT_API_KEY``/``LIVEKIT_API_SECRET``, default the ``livekit-server
--dev`` pair ``devkey``/``secret``) is set: route with a room -> join -> a caller joins
with the returned token, speaks the question on its microphone track -> the agent's reply
track carries speech -> the caller leaves -> the session ends. See
docs/transports/livekit.md.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from rspp.testing import with_patient_budgets
from rspp.transports import livekit_available

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not livekit_available(),
                                 reason="the LiveKit SDKs are not installed (rspp[livekit])")]

KEY = "livekit-e2e-admin-key"
SECRET = "secret-of-at-least-thirty-two-bytes!!"


def _route(srv: ServeProcess, attributes: dict[str, str]) -> dict[str, Any]:
    res = httpx.post(f"{srv.url}/v1/sessions/route", headers={"Authorization": f"Bearer {KEY}"},
                     json={"tenant_id": "acme", "pipeline_name": "voice-assistant",
                           "attributes": attributes}, timeout=30)
    assert res.status_code == 201, res.text
    route: dict[str, Any] = res.json()
    return route


def test_join_endpoint_checks_the_token_and_the_route_before_any_room(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    from rspp.controlplane._server import free_port

    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens: no room is reachable
    srv = serve_process("--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}", "--api-key", KEY,
                        "--livekit-url", url, "--livekit-key", "devkey",
                        "--livekit-secret", SECRET).wait_ready()
    room = _route(srv, {"room": "support-1"})
    plain = _route(srv, {})
    join = f"{srv.url}/v1/livekit/sessions/{room['session_id']}/join"
    nobody = httpx.post(join, timeout=30)
    assert nobody.status_code == 401 and nobody.json()["error"]["field"] == "Authorization"
    forged = httpx.post(join, headers={"Authorization": "Bearer x.y.z"}, timeout=30)
    assert forged.status_code == 401
    other = httpx.post(join, headers={"Authorization": f"Bearer {plain['token']}"}, timeout=30)
    assert other.status_code in (401, 403)
    no_room = httpx.post(f"{srv.url}/v1/livekit/sessions/{plain['session_id']}/join",
                         headers={"Authorization": f"Bearer {plain['token']}"}, timeout=30)
    assert no_room.status_code == 400 and no_room.json()["error"]["field"] == "attributes.room"
    bad_identity = httpx.post(join, headers={"Authorization": f"Bearer {room['token']}"},
                              json={"identity": "no spaces allowed"}, timeout=30)
    assert bad_identity.status_code == 400
    assert bad_identity.json()["error"]["field"] == "identity"
    code, _, err = srv.terminate()
    assert code == 0, err
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RSPP_", "LIVEKIT_"))}
    half = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "serve", "--port", "0",
         "--livekit-url", url], env=env, capture_output=True, text=True, timeout=60,
        check=False)
    assert half.returncode == 2 and "--livekit-key" in half.stderr


@pytest.mark.skipif(not os.environ.get("LIVEKIT_URL"),
                    reason="LIVEKIT_URL is not set: no LiveKit server to join "
                           "(docs/transports/livekit.md runs one with livekit-server --dev)")
def test_a_caller_in_a_livekit_room_is_answered_and_leaving_ends_the_session(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path
) -> None:
    lk_url = os.environ["LIVEKIT_URL"]
    lk_key = os.environ.get("LIVEKIT_API_KEY", "devkey")
    lk_secret = os.environ.get("LIVEKIT_API_SECRET", "secret")
    spec = tmp_path / "voice.yaml"
    voice = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"
    spec.write_text(with_patient_budgets(voice.read_text()))
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--livekit-url", lk_url, "--livekit-key", lk_key,
                        "--livekit-secret", lk_secret).wait_ready()
    room_name = f"rspp-e2e-{os.getpid()}"
    route = _route(srv, {"room": room_name})
    joined = httpx.post(f"{srv.url}/v1/livekit/sessions/{route['session_id']}/join",
                        headers={"Authorization": f"Bearer {route['token']}"},
                        json={"identity": "caller-e2e"}, timeout=120)
    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert body["room"] == room_name and body["url"] == lk_url
    with wave.open(str(spoken["question"])) as w:
        pcm16k = w.readframes(w.getnframes())
    heard = asyncio.run(_caller(body["url"], body["token"], pcm16k))
    assert heard["reply_frames"] > 25  # more than half a second of reply audio
    assert heard["reply_rms"] > 100.0  # speech, not silence
    auth = {"Authorization": f"Bearer {KEY}"}
    for _ in range(600):  # the caller left: the session ends (bounded wait on its record)
        info = httpx.get(f"{srv.url}/v1/sessions/{route['session_id']}", headers=auth).json()
        if info["status"] == "ended":
            break
        asyncio.run(asyncio.sleep(0.1))
    assert info["status"] == "ended"
    code, _, err = srv.terminate()
    assert code == 0, err


async def _caller(url: str, token: str, pcm16k: bytes) -> dict[str, float]:
    """Join as the caller, speak on a microphone track, collect the agent's reply audio."""
    import soxr
    from livekit import rtc

    room = rtc.Room()
    got: list[np.ndarray] = []
    reply = asyncio.Event()

    async def listen(track: Any) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=48000, num_channels=1)
        async for ev in stream:
            x = np.frombuffer(bytes(ev.frame.data), dtype=np.int16)
            if np.abs(x).max() > 300:
                got.append(x)
                if len(got) > 50:
                    reply.set()

    tasks: list[asyncio.Task[Any]] = []

    def on_track(track: Any, pub: Any, participant: Any) -> None:
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.create_task(listen(track)))

    room.on("track_subscribed", on_track)
    await room.connect(url, token)
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    x = np.asarray(soxr.resample(np.frombuffer(pcm16k, dtype=np.int16), 16000, 48000),
                   dtype=np.int16).tobytes()
    speech = x + bytes(48000 * 2 * 2)  # the question, then two seconds of open microphone
    for i in range(0, len(speech), 1920):
        await source.capture_frame(rtc.AudioFrame(speech[i:i + 1920].ljust(1920, b"\0"),
                                                  48000, 1, 960))
    silence = rtc.AudioFrame(bytes(1920), 48000, 1, 960)
    async with asyncio.timeout(90):
        while not reply.is_set():
            await source.capture_frame(silence)
    await room.disconnect()
    for t in tasks:
        t.cancel()
    audio = np.concatenate(got).astype(np.float64)
    return {"reply_frames": float(len(got)), "reply_rms": float(np.sqrt(np.mean(audio ** 2)))}
