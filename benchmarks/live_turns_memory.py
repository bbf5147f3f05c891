"""Memory of one long live session, per turn: a served text chat over WebSocket.

One session of :data:`rspp.testing.TEXT_CHAT_SPEC` (typed text -> offline ``local`` LLM ->
reply text; no audio, so turns are quick) on the local session factory behind the
WebSocket route (``ws_sessions.runtime``), ``--turns`` typed turns in a row. tracemalloc
counts what is still allocated after a warm-up and again at the end, for the live
transport's own modules (``transports/_live.py`` and the reply text stream
``transports/_reply.py``: the per-turn state ``LiveTransport.turns`` holds) and for the
whole process (everything the session, its recorder and the server keep; the
timeline is written to a directory, as ``rspp serve --timeline-dir`` does).

Last line (JSON): ``transport_bytes_per_turn`` (what the live transport still adds per turn
once its window of finished turns is full: its list of playback signals, ~80 bytes; ~870 bytes
of a text reply while it kept every turn) and ``process_bytes_per_turn``.
"""

from __future__ import annotations

import gc
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

from _common import emit, quick_parser
from ws_sessions import runtime

from rspp.client import LiveClient
from rspp.runner import LocalFactoryOptions, LocalSessionFactory, compile_spec_file
from rspp.server._loop import run as run_loop
from rspp.testing import TEXT_CHAT_SPEC
from rspp.transports import ReplyText, TurnEvent

_TRANSPORT_FILES = ("transports/_live.py", "transports/_reply.py")


def _bytes() -> tuple[int, int]:
    """(allocated by the live transport's modules, allocated in all) now, after a collection."""
    gc.collect()
    snap = tracemalloc.take_snapshot()
    own = sum(s.size for s in snap.statistics("filename")
              if s.traceback[0].filename.endswith(_TRANSPORT_FILES))
    return own, sum(s.size for s in snap.statistics("filename"))


async def _turn(client: LiveClient, n: int) -> None:
    await client.send_text(f"what is {n} plus {n}")
    async for ev in client.events():
        if isinstance(ev, ReplyText) and ev.final and not ev.text:
            raise RuntimeError(f"turn {n}: empty reply")
        if isinstance(ev, TurnEvent) and ev.state == "close":
            return


async def main(turns: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "text_chat.yaml"
        spec.write_text(TEXT_CHAT_SPEC)
        # as ``rspp serve --timeline-dir`` runs it: the timeline goes to disk as it grows
        factory = LocalSessionFactory(compile_spec_file(spec),
                                      LocalFactoryOptions(timeline_dir=Path(tmp)))
        return await _measure(factory, turns, warmup)


async def _measure(factory: LocalSessionFactory, turns: int, warmup: int) -> dict[str, Any]:
    tracemalloc.start()
    async with runtime(factory) as (url, hub):
        async with await LiveClient.connect(f"{url}/v1/sessions/mem1/ws", token="bench") as c:
            for n in range(warmup):
                await _turn(c, n)
            own0, all0 = _bytes()
            for n in range(warmup, turns):
                await _turn(c, n)
            own1, all1 = _bytes()
            kept = len(hub.sessions["mem1"].transport.turns)
            await c.end()
    tracemalloc.stop()
    measured = turns - warmup
    return {"benchmark": "live_turns_memory", "turns": turns, "warmup_turns": warmup,
            "turns_kept": kept,
            "transport_bytes_at_warmup": own0, "transport_bytes_at_end": own1,
            "transport_bytes_per_turn": round((own1 - own0) / measured, 1),
            "process_bytes_per_turn": round((all1 - all0) / measured, 1)}


if __name__ == "__main__":
    ap = quick_parser(__doc__)
    ap.add_argument("--turns", type=int, default=None, help="turns in the session (default 600)")
    a = ap.parse_args()
    total = a.turns or (150 if a.quick else 600)
    emit(run_loop(main(total, warmup=50)))
