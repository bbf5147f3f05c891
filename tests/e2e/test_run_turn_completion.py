"""When a turn's generation is complete (truth table T6) in graphs other than the assistant.

* The final transcript fanned out to one more output (``stt.final -> output.heard``): that
  output is part of the reply and ends with the STT's end-of-stream marker; the turn used
  to wait for it forever and ended ``abort(session_end)``.
* No LLM: an echo (``stt.final -> tts.text``) speaks the transcript and ends its audio on
  the STT's end-of-stream marker; an STT-only graph's reply is its final transcript. Both
  used to stay Active until the session ended (``abort(session_end)``).

Each runs through ``rspp run`` and the echo's L2 timeline replays with no divergence; the
echo and the STT-only graph are also served by ``rspp serve`` to a live WebSocket client
(the live transport ends the reply on the kernel's ``stream_end`` as the loopback does).
No node sees an end marker: the end is derived from the graph (the reply is complete once
nothing downstream of the STT's final transcript holds an event of the turn).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.client import LiveClient, route_session
from rspp.testing import with_patient_budgets
from rspp.transports import AudioOut, Transcript, TurnEvent, read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
VOICE = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
HEAD = VOICE.split("\nnodes:")[0]
FRONT = """
nodes:
  - {id: vad, type: vad, params: {engine: energy, endpointing: silence, silence_ms: 500}}
  - {id: stt, type: stt}
  - {id: tts, type: tts}
edges:
  - {from: input.audio, to: vad.audio}
  - {from: vad.audio, to: stt.audio}
  - {from: vad.vad, to: stt.vad}
  - {from: stt.final, to: output.transcript}
"""
SPECS = {
    "fanned_transcript": VOICE + "  - {from: stt.final, to: output.heard}\n",
    "echo": HEAD + FRONT + "  - {from: stt.final, to: tts.text}\n"
                           "  - {from: tts.audio, to: output.audio}\n",
    "stt_only": HEAD.replace("  llm: {primary: local}\n", "").replace(
        "  tts: {primary: espeak}\n", "") + FRONT.replace("  - {id: tts, type: tts}\n", ""),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_turn_without_an_llm_reply_commits(name: str, spoken: dict[str, Path],
                                             rspp_cli: RsppCli, tmp_path: Path) -> None:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(SPECS[name])
    tl = tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--timeline", str(tl),
                       "--record-level", "L2", "--json")
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    assert "weather" in turn["transcript"], turn
    if name == "stt_only":
        assert turn["reply"] == "", turn
    else:  # the echo speaks the transcript; the fanned output carries it beside the reply
        assert "weather" in turn["reply"], turn
    lines = [json.loads(x) for x in tl.read_text().splitlines()]
    signals = [ln["record"]["signal"] for ln in lines if ln["kind"] == "control_signal"]
    assert signals.count("commit") == 1 and "abort" not in signals, signals
    if name != "echo":
        return
    rspp_cli.replays_clean(tl, spec, tmp_path / "replay.json")


KEY = "turn-completion-e2e-admin-key"


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", ["echo", "stt_only"])
async def test_a_served_turn_without_an_llm_reply_commits(
        name: str, spoken: dict[str, Path], serve_process: Callable[..., ServeProcess],
        tmp_path: Path) -> None:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(with_patient_budgets(SPECS[name]))
    srv = await asyncio.to_thread(lambda: serve_process(
        str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
        "--api-key", KEY).wait_ready())
    target = await route_session(srv.url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="voice-assistant")
    pcm, rate = read_wav(spoken["question"])
    log: list[Any] = []
    closed = asyncio.Event()

    async def read(client: LiveClient) -> None:
        async for ev in client.events():
            log.append(ev)
            if isinstance(ev, TurnEvent) and ev.state == "close":
                closed.set()
                return

    async def speak(client: LiveClient) -> None:
        await client.stream_pcm(pcm, rate)
        loop = asyncio.get_running_loop()
        t0, k = loop.time(), 0
        while not closed.is_set():  # an open microphone: silence until the turn closed
            await client.send_audio(bytes(rate // 50 * 2))
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))

    async with await LiveClient.connect(target.url, token=target.token,
                                        sample_rate=rate) as client:
        await asyncio.wait_for(asyncio.gather(read(client), speak(client)), 180)
        await client.end()
    code, _, err = await asyncio.to_thread(srv.terminate)
    assert code == 0, err
    states = [(e.state, e.reason) for e in log if isinstance(e, TurnEvent)]
    assert states == [("open", None), ("commit", None), ("close", None)], states
    commit = next(i for i, e in enumerate(log) if isinstance(e, TurnEvent)
                  and e.state == "commit")
    finals = [i for i, e in enumerate(log) if isinstance(e, Transcript) and e.final
              and "weather" in e.text]
    assert finals and finals[0] < commit, log
    audio = [i for i, e in enumerate(log) if isinstance(e, AudioOut)]
    if name == "echo":  # the transcript was spoken back, all of it before the commit
        assert audio and max(audio) < commit
    else:
        assert not audio
