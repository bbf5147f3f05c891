"""``rspp serve --ws-compression``: permessage-deflate on the WebSocket transport (F-031).

A runtime served with ``--ws-compression events`` negotiates ``permessage-deflate``
with a client that offers it (the ``websockets`` client, and ``rspp talk --compress``)
and not with one that does not. The same typed question gets the same session either
way (turn states, reply text, the reply audio byte for byte): compression lives in the
transport only. ``/metrics`` shows the event bytes it saved, the CPU time the codec
took, and that the audio frames went uncompressed (``events`` mode). (``off``, the
default, and ``all``: tests/integration/server/test_ws_compression_modes.py.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from rspp.client import LiveClient, TalkOptions, route_session, talk
from rspp.testing import TEXT_VOICE_SPEC
from rspp.transports import AudioOut, ReplyText, Transcript, TurnEvent

if TYPE_CHECKING:
    from tests.e2e.conftest import ServeProcess

pytestmark = pytest.mark.e2e

KEY = "ws-compression-admin-key"
QUESTION = "tell me about the weather"


def _serve(start: Callable[..., ServeProcess], d: Path, *args: str) -> ServeProcess:
    spec = d / "text_voice.yaml"
    spec.write_text(TEXT_VOICE_SPEC)
    return start(str(spec), "--db", f"sqlite+aiosqlite:///{d / 'cp.db'}", "--api-key", KEY,
                 *args).wait_ready()


async def _session(url: str, *, compression: bool) -> tuple[bool, list[Any], bytes]:
    """One typed question; (deflate negotiated, the session's events as comparable tuples,
    the reply audio)."""
    target = await route_session(url, tenant_id="acme", api_key=KEY,
                                 pipeline_name="text-voice")
    seen: list[Any] = []

    def keep(ev: Any) -> None:
        if isinstance(ev, TurnEvent):
            seen.append(("turn", ev.state, ev.reason))
        elif isinstance(ev, (ReplyText, Transcript)) and ev.final:  # (deltas: as timed)
            seen.append((type(ev).__name__, ev.text))
        elif isinstance(ev, AudioOut):
            seen.append("audio")

    async with await LiveClient.connect(target.url, token=target.token,
                                        compression=compression) as client:
        negotiated = client.compressed
        result = await talk(client, b"", TalkOptions(texts=(QUESTION,), quiet_s=0.5),
                            on_event=keep)
    assert result.ok, (result.close_code, result.close_reason)
    # audio frames may interleave differently with the text events: compare them apart
    return negotiated, [e for e in seen if e != "audio"], bytes(result.audio)


def _metric(metric_sample: Callable[..., float | None], text: str, name: str,
            **labels: str) -> float:
    value = metric_sample(text, name, **labels)
    assert value is not None, f"{name}{labels} not on /metrics"
    return value


def test_deflate_is_negotiated_on_request_and_the_session_is_the_same(
    serve_process: Callable[..., ServeProcess], tmp_path: Path,
    metric_sample: Callable[..., float | None]
) -> None:
    srv = _serve(serve_process, tmp_path, "--ws-compression", "events")
    plain_neg, plain, plain_audio = asyncio.run(_session(srv.url, compression=False))
    comp_neg, comp, comp_audio = asyncio.run(_session(srv.url, compression=True))
    assert (plain_neg, comp_neg) == (False, True)
    assert ("turn", "commit", None) in comp and any(e[0] == "ReplyText" for e in comp), comp
    assert comp == plain
    # as much reply audio (its frames go uncompressed in `events` mode; espeak-ng's samples
    # differ between any two sessions, compressed or not, as the segmenter cut the reply)
    assert len(comp_audio) > 16000 and abs(len(comp_audio) - len(plain_audio)) \
        < len(plain_audio) // 10, (len(comp_audio), len(plain_audio))

    metrics = httpx.get(f"{srv.url}/metrics", timeout=30).text
    assert _metric(metric_sample, metrics, "rspp_ws_compression_connections_total",
                   mode="events") == 1
    raw = _metric(metric_sample, metrics, "rspp_ws_compression_bytes_total",
                  direction="out", form="raw")
    wire = _metric(metric_sample, metrics, "rspp_ws_compression_bytes_total",
                   direction="out", form="wire")
    assert 0 < wire < raw  # the event messages shrank
    assert _metric(metric_sample, metrics, "rspp_ws_compression_cpu_seconds_total",
                   direction="out") > 0
    # the reply audio went uncompressed: at least one frame per 20 ms of it
    assert _metric(metric_sample, metrics, "rspp_ws_compression_passed_messages_total",
                   mode="events") \
        >= len(comp_audio) // 2 // 24000 * 50

    # `rspp talk --compress` negotiates it too, and says so
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    res = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "talk", "--server",
         srv.url, "--tenant", "acme", "--pipeline", "text-voice", "--api-key", KEY,
         "--text", QUESTION, "--compress"],
        env=env, capture_output=True, text=True, timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "permessage-deflate)" in res.stdout and "commit" in res.stdout, res.stdout
