"""``transport.buffering``: latency-first vs accuracy-first audio buffering (F-054).

One ``rspp serve`` holds the offline assistant twice: ``voice-fast`` with
``transport.buffering: latency_first`` and ``voice-accurate`` with ``accuracy_first``.
The same spoken question goes to each over a MessagePack WebSocket (every frame
numbered, paced in real time), with one frame arriving six frames late. The
latency-first session gives the frame up at once (its shallow ``low_latency`` jitter
buffer reorders across two frames only), conceals its place and drops it when it comes
(too late); the accuracy-first session holds the frames behind it until it arrives
(``accuracy``: up to a second) and puts it back in place, losing nothing, at the price
of the hold. Each turn's plan (in the served timeline) freezes the strategy's audio-edge
policy: shed past 100 ms (``drop``) vs never shed (``block``, 10 s); reply audio to
``output`` keeps the profile's. ``/metrics`` counts both outcomes.
``rspp run`` applies the same plans (the recorded turn plan of a local run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import Impairment, with_patient_budgets
from rspp.transports import Stats, TurnEvent, read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "buffering-e2e-admin-key"
VOICE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "voice_assistant.yaml"
#: frame 30 (in the speech) arrives right after frame 36
LATE = 30


def _spec(name: str, strategy: str) -> str:
    text = with_patient_budgets(VOICE.read_text()).replace(
        "name: voice-assistant", f"name: {name}", 1)
    return text + f"\ntransport:\n  buffering: {strategy}\n"


def _plans(timeline: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    return [ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan"]


def _audio_policies(plan: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {edge: (p["strategy"], p["max_queue_ms"])
            for edge, p in plan["edge_buffer_policies"].items() if ".audio" in edge}


async def _speak(url: str, pipeline: str, pcm: bytes, rate: int) -> tuple[str, Stats, list[str]]:
    """The question, numbered frames paced in real time with frame ``LATE`` late; (session
    id, the final stats, the turn states)."""
    target = await route_session(url, tenant_id="acme", api_key=KEY, pipeline_name=pipeline)
    n = rate // 50 * 2
    frames = [pcm[i:i + n].ljust(n, b"\0") for i in range(0, len(pcm), n)]
    frames += [bytes(n)] * 75  # 1.5 s of silence: the VAD ends the utterance
    order = Impairment(len(frames), late={LATE: LATE + 6}).order()
    async with await LiveClient.connect(target.url, token=target.token, sample_rate=rate,
                                        msgpack=True) as client:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, k in enumerate(order):
            await client.send_audio(frames[k], seq=k)
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
        await client.end()
        events = [e async for e in client.events()]
    stats = [e for e in events if isinstance(e, Stats)]
    states = [e.state for e in events if isinstance(e, TurnEvent)]
    return target.session_id, stats[-1], states


def test_latency_first_sheds_the_late_frame_and_accuracy_first_waits_for_it(
    serve_process: Callable[..., ServeProcess], spoken: dict[str, Path], tmp_path: Path,
    rspp_cli: RsppCli
) -> None:
    fast, accurate = tmp_path / "fast.yaml", tmp_path / "accurate.yaml"
    fast.write_text(_spec("voice-fast", "latency_first"))
    accurate.write_text(_spec("voice-accurate", "accuracy_first"))
    timelines = tmp_path / "timelines"
    srv = serve_process(str(fast), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--timeline-dir", str(timelines)).wait_ready()
    published = httpx.post(f"{srv.url}/v1/pipelines", timeout=30,
                           headers={"Authorization": f"Bearer {KEY}"},
                           json={"spec": accurate.read_text(), "filename": "accurate.yaml"})
    assert published.status_code == 201, published.text
    pcm, rate = read_wav(spoken["question"])

    async def both() -> tuple[tuple[str, Stats, list[str]], tuple[str, Stats, list[str]]]:
        return (await _speak(srv.url, "voice-fast", pcm, rate),
                await _speak(srv.url, "voice-accurate", pcm, rate))

    (fast_sid, fst, fast_states), (acc_sid, ast, acc_states) = asyncio.run(both())
    metrics = httpx.get(f"{srv.url}/metrics", timeout=30).text
    code, _, err = srv.terminate()  # the timelines are complete once it has exited
    assert code == 0, err

    # latency-first: the gap is given up at once (concealed), the frame dropped on arrival
    assert fst.jitter_profile == "low_latency"
    assert (fst.reordered_frames, fst.lost_frames, fst.concealed_frames,
            fst.too_late_frames) == (0, 1, 1, 1), fst
    # accuracy-first: the frames behind the gap are held until it arrives, nothing is lost
    assert ast.jitter_profile == "accuracy"
    assert (ast.reordered_frames, ast.lost_frames, ast.concealed_frames,
            ast.too_late_frames) == (1, 0, 0, 0), ast
    assert ast.jitter_hold_max_ms > fst.jitter_hold_max_ms  # the latency it costs
    assert "commit" in fast_states and "commit" in acc_states, (fast_states, acc_states)
    for line in ('rspp_ingress_jitter_frames_total{outcome="too_late",transport="websocket"} 1.0',
                 'rspp_ingress_jitter_frames_total{outcome="reordered",transport="websocket"} '
                 '1.0'):
        assert line in metrics, line

    # the strategy is frozen in every turn plan: ingress audio edges shed vs never shed
    expected = {
        "latency_first": {"input.audio->vad.audio": ("drop", 100),
                          "vad.audio->stt.audio": ("drop", 100),
                          "tts.audio->output.audio": ("drop", 500)},
        "accuracy_first": {"input.audio->vad.audio": ("block", 10000),
                           "vad.audio->stt.audio": ("block", 10000),
                           "tts.audio->output.audio": ("drop", 500)}}
    for sid, strategy in ((fast_sid, "latency_first"), (acc_sid, "accuracy_first")):
        plans = _plans(timelines / f"{sid}.jsonl")
        assert plans and all(_audio_policies(p) == expected[strategy] for p in plans), plans

    # `rspp run` resolves the same plans (a local run of the accuracy-first spec)
    out = tmp_path / "run.jsonl"
    res = rspp_cli.run(str(accurate), "--input", str(spoken["question"]), "--timeline",
                       str(out), "--json")
    assert res.returncode == 0, res.stderr
    plans = _plans(out)
    assert plans and all(_audio_policies(p) == expected["accuracy_first"] for p in plans)
