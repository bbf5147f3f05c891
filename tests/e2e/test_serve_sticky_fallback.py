"""Budget exhaustion moves a served session to its secondary STT provider (F-047).

``rspp serve`` of the offline assistant whose STT primary is the Deepgram adapter pointed
at :class:`~rspp.testing.fakes.FakeDeepgram` on loopback, which stalls (answers nothing
for 5 s); the secondary is the offline pocketsphinx. The spec gives the primary a 1 s
budget (``timeout_ms``) and ``sticky_fallback: true``. The client speaks, waits for the
turn to close, then speaks again. The first segment exhausts the primary's budget: the
timeline records ``provider_error`` (outcome timeout) and the routing change
(``provider_switch`` deepgram -> pocketsphinx), and the secondary transcribes it (its
audio replayed). The second segment goes to the secondary directly: the primary gets no
second connection and no second provider error is recorded.
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
from rspp.testing import TEXT_CHAT_SPEC, voice_assistant_spec, with_patient_budgets
from rspp.testing.fakes import FakeDeepgram, Fault
from rspp.transports import TurnEvent, read_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

ADMIN = "sticky-admin-key"
KEY_ENV = "STICKY_FAKE_DEEPGRAM_KEY"  # not RSPP_*: the served process keeps it
KEY = "dg-sticky-test-key"

SPEC = with_patient_budgets(voice_assistant_spec("sticky-stt", head="profile: simple/v1", stt="""
    primary: deepgram
    fallbacks: [pocketsphinx]
    timeout_ms: 1000
    config: {base_url: "%s", api_key: "env://%s", sticky_fallback: true,
             retry: {max_retries: 0}}"""))


async def _talk(url: str, fake: FakeDeepgram, questions: list[bytes], rate: int
                ) -> tuple[str, list[Any], list[int]]:
    """One session: each question, then wait until its turn closes; connections to the
    primary counted after each turn."""
    target = await route_session(url, tenant_id="acme", api_key=ADMIN,
                                 pipeline_name="sticky-stt")
    got: list[Any] = []
    seen: list[int] = []
    async with await LiveClient.connect(target.url, token=target.token) as client:
        events = client.events()
        for pcm in questions:
            await client.stream_pcm(pcm + b"\x00\x00" * (rate // 1000) * 1200, rate)
            async for ev in events:
                got.append(ev)
                if isinstance(ev, TurnEvent) and ev.state == "close":
                    break
            seen.append(len(fake.requests))
        await client.end()
        async for ev in events:
            got.append(ev)
    return target.session_id, got, seen


async def _scenario(srv: ServeProcess, questions: list[bytes], rate: int
                    ) -> tuple[str, list[Any], list[int]]:
    fake = FakeDeepgram(api_key=KEY)
    fake.faults.sticky = Fault("stall", seconds=5)  # five times the primary's budget
    async with fake.serve() as dg:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(timeout=30) as http:
            res = await http.post(f"{srv.url}/v1/pipelines", headers=auth,
                                  json={"spec": SPEC % (dg, KEY_ENV), "filename": "sticky.yaml"})
            assert res.status_code == 201, res.text
        return await _talk(srv.url, fake, questions, rate)


def test_budget_exhaustion_moves_later_segments_to_the_secondary(
    serve_process: Callable[..., ServeProcess], rspp_cli: RsppCli, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    weather = rspp_cli.say("what is the weather like today", tmp_path / "q1.wav")
    clock = rspp_cli.say("what time is it", tmp_path / "q2.wav")
    (pcm1, rate), (pcm2, _) = read_wav(weather), read_wav(clock)
    first_spec = tmp_path / "chat.yaml"  # the served default; the test publishes its own
    first_spec.write_text(TEXT_CHAT_SPEC)
    srv = serve_process(str(first_spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", ADMIN, "--timeline-dir", str(tmp_path / "timelines"),
                        "--record-level", "L1").wait_ready()
    sid, got, seen = asyncio.run(asyncio.wait_for(_scenario(srv, [pcm1, pcm2], rate), 240))

    turns: dict[str, list[str]] = {}
    for ev in got:
        if isinstance(ev, TurnEvent):
            turns.setdefault(ev.turn_id, []).append(ev.state)
    assert list(turns.values()) == [["open", "commit", "close"]] * 2, turns
    assert seen == [1, 1]  # the primary was tried for the first segment only

    timeline = tmp_path / "timelines" / f"{sid}.jsonl"
    srv.terminate()
    records = [json.loads(x)["record"] for x in timeline.read_text().splitlines()]
    errors = [r for r in records if r.get("signal") == "provider_error"]
    switches = [r for r in records if r.get("signal") == "provider_switch"]
    assert len(errors) == 1, errors
    assert "provider=deepgram" in errors[0]["reason"]
    assert "outcome=timeout" in errors[0]["reason"]
    assert len(switches) == 1, switches  # the routing change, recorded once
    assert "from=deepgram to=pocketsphinx" in switches[0]["reason"]
    assert "cause=outcome=timeout" in switches[0]["reason"]
    transcripts = [r for r in records if r.get("edge_id") == "output.transcript"]
    assert len(transcripts) >= 2
