"""WebSocket session capacity: N live clients (separate process, real sockets) -> one runtime.

The runtime (this process, on the event loop ``rspp serve`` runs: uvloop) serves
``/v1/sessions/{id}/ws`` (the real endpoint, ``LiveTransport``, the shared egress pacer
and session hub) on uvicorn at 127.0.0.1 with the WebSocket protocol ``rspp serve`` runs
(``LeanWebSocketProtocol``; ``BENCH_WS=websockets-sansio`` picks uvicorn's own); each
session runs the sessions_capacity mock pipeline (VAD -> STT -> LLM -> TTS,
benchmarks/sessions_capacity.py): 1 s of speech every 3 s, the mock TTS streams 25 x
20 ms frames, each numbered (reply, index).
Client processes (``--client``, 2 by default, real sockets) open N connections (the
``websockets`` sans-I/O protocol on bare asyncio protocols, ``_common.WsClient``: no
task per connection) and stream 20 ms PCM frames in real time from one timer, the
clients spread over 10 phases of the 20 ms period (independent clients' ticks are not
aligned). Per reply frame the client measures lateness = arrival - (send time of the
utterance-ending frame + 200 ms + i x 20 ms) (every delay on the path counts: network,
ingress, kernel, pacing, egress, the client's own loop), and checks that every
utterance's 25 frames arrive, in order (``lost``: gaps, ``reordered``, ``missing``:
frames of a measured reply that never came). ``p50_ms``/``p99_ms`` are that client-side
lateness (the worst client process's); ``server_pacer_p99_ms`` is the runtime pacer's
own lateness against each frame's due time (before the send queue and the socket), and
``loop_lag_p99_ms`` how late the runtime's loop wakes a 5 ms timer (``loop_lag_spikes``:
wake-ups later than 10/20/50 ms). The runtime settles its heap as ``rspp serve`` does
(``settle_heap``; ``BENCH_GC=default`` keeps CPython's collector as is); ``gc_*`` are its
collections while measuring, per generation (count, CPU ms, longest, objects freed), the
objects the collector tracks (at start, per session) and ``gc_full_ms``, the CPU of one
full collection with every session live (the longest pause the collector can cause).
Capacity = largest N with client p99 <= 20 ms and no lost, reordered or missing frame. CPU ms per
session-second and RSS MB per session are the runtime process's; ``client_cpu_cores``
the client processes' (on the same machine).

``--latency``: the offline voice assistant, one session, 20 spoken turns: end of
user speech (the last voiced frame sent) -> first reply audio byte at the client;
p50/p95.

``cpu_us_per_frame``: runtime CPU per audio frame taken in or sent out (robust when a
loaded machine starves the clients, which lowers CPU per session-second).

``--pin``: the runtime runs on the first CPU and the client processes on the others
(``os.sched_setaffinity``; ``pinned`` in the output says which); unpinned by default
(the OS schedules both on every CPU). The clients send each 20 ms frame as a ready,
masked frame (``_common.WsClient``), a small share of a CPU.

Usage: ``python benchmarks/ws_sessions.py [--quick] [--sessions 100,200,300] [--seconds S]
[--latency] [--pin]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WsClient, cpu_seconds, emit, percentile, quick_parser, rss_mb, send_ticks
from sessions_capacity import CYCLE_FRAMES, FMT, MockLlm, MockStt, MockTts, MockVad

from rspp.kernel import (
    BufferConfig,
    Correlation,
    Event,
    GraphBuilder,
    NodeRegistry,
    RecordStamp,
    SessionActor,
    SessionOptions,
    SystemClock,
)
from rspp.server._loop import loop_name, settle_heap
from rspp.server._loop import run as run_loop
from rspp.transports import (
    ClientAudio,
    LiveOptions,
    LiveSessionHandle,
    LiveTransport,
    SessionGrant,
    SessionHub,
    websocket_route,
)
from rspp.turns import SessionLifecycle

SPEC = Path(__file__).resolve().parents[1] / "pipelines" / "examples" / "voice_assistant.yaml"
SPEECH_END = 50  # frame of each 3 s cycle whose arrival ends the utterance (mock VAD)
REPLY_FRAMES = 25


class NumberedTts(MockTts):
    """The mock TTS, each frame numbered (reply of the session, frame index) for the client:
    reply r answers the session's r-th utterance (its cycle r)."""

    type_name = "mock.tts_numbered"

    def __init__(self, ctx: Any, params: Any = None) -> None:
        super().__init__(ctx, params)
        self.replies = 0

    async def process(self, event: Event, port: str) -> None:
        if not event.final:
            return
        reply = self.replies
        self.replies += 1
        clock = self.ctx.clock
        t0 = event.ingress_ns + 200_000_000
        for i in range(REPLY_FRAMES):
            due = t0 + i * 20_000_000
            delay = due - clock.monotonic_ns()
            if delay > 0:
                await clock.sleep(delay / 1e9)
            head = struct.pack(">II", reply, i)
            out = event.derive("audio_chunk", head + bytes(640 - len(head)), audio_format=FMT,
                               sample_index=i * 320)
            out.ingress_ns = due
            self.ctx.emit(out)


def build_graph() -> Any:
    b = GraphBuilder("voice-mock", "1.0.0")
    b.node("vad", "mock.vad").node("stt", "mock.stt")
    b.node("llm", "mock.llm").node("tts", "mock.tts_numbered")
    buf = BufferConfig(max_items=64, max_queue_ms=2000, max_latency_ms=2000)
    b.edge("input.audio", "vad.in", buffer=buf).edge("vad.out", "stt.in", buffer=buf)
    b.edge("stt.out", "llm.in", buffer=buf).edge("stt.partial", "output.transcript", buffer=buf)
    b.edge("llm.out", "tts.in", buffer=buf).edge("tts.out", "output.audio", buffer=buf)
    return b.build()


class _NoTurns:
    """The mock pipeline has no turn driver: nothing is ever busy or speaking; the session
    states (what a turn driver owns) are kept as a real one keeps them."""

    busy = False
    active_turn: str | None = None
    speaking: str | None = None

    def __init__(self, session: SessionActor) -> None:
        corr = Correlation("bench", session.session_id, session.pipeline_version)
        self.session_lifecycle = SessionLifecycle(
            RecordStamp(corr, session.timebase, next_seq=session._next_seq), authority_epoch=1)

    def playback_started(self, turn_id: str) -> None: ...

    def generation_complete(self, turn_id: str) -> None: ...

    def output_complete(self, turn_id: str) -> None: ...

    def end_session(self) -> None: ...


class MockCore:
    """A mock-pipeline session behind the real LiveTransport (SessionCore)."""

    def __init__(self, session: SessionActor) -> None:
        self.session = session
        self.driver = _NoTurns(session)

    async def start(self) -> None:
        await self.session.start()

    async def finish(self, on_stopped: Any = None) -> None:
        await self.session.stop()
        if on_stopped is not None:
            on_stopped()


class MockFactory:
    """SessionFactory of mock-pipeline sessions (the runtime side of the benchmark)."""

    def __init__(self) -> None:
        self.registry = NodeRegistry()
        for cls in (MockVad, MockStt, MockLlm, NumberedTts):
            self.registry.register(cls)
        self.graph = build_graph()
        self.clock = SystemClock()

    async def open(self, session_id: str, grant: SessionGrant,
                   audio: ClientAudio) -> LiveSessionHandle:
        transport = LiveTransport(16000, LiveOptions())
        session = SessionActor(self.graph, session_id=session_id, registry=self.registry,
                               clock=self.clock, options=SessionOptions(signal_maxlen=64),
                               output_sink=transport.output)
        core = MockCore(session)
        transport.attach(session, core.driver)
        handle = LiveSessionHandle(core, transport, tenant_id=grant.tenant_id)
        await core.start()
        return handle


async def _open_grant(token: str, session_id: str) -> SessionGrant:
    return SessionGrant(session_id=session_id, tenant_id="bench")


@contextlib.asynccontextmanager
async def runtime(factory: Any, route: Any = websocket_route) -> Any:
    """uvicorn on 127.0.0.1 serving ``route(hub, verifier)``; yields (ws base URL, hub)."""
    import uvicorn
    from starlette.applications import Starlette

    hub = SessionHub(factory)
    app = Starlette(routes=[route(hub, _open_grant)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # the WebSocket protocol ``rspp serve`` runs (BENCH_WS=websockets-sansio: uvicorn's own)
    ws: Any = os.environ.get("BENCH_WS")
    if not ws:
        from rspp.server._wsproto import LeanWebSocketProtocol as ws
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off",
                                           ws=ws, access_log=False,
                                           ws_ping_interval=None, backlog=2048))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn exposes no readiness event
        await asyncio.sleep(0.01)
    # as ``rspp serve`` does once started (BENCH_GC=default: CPython's collector as is)
    threshold = gc.get_threshold()
    if os.environ.get("BENCH_GC") != "default":
        settle_heap()
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}", hub
    finally:
        await hub.aclose()
        server.should_exit = True
        await asyncio.wait({task})
        sock.close()
        gc.unfreeze()
        gc.set_threshold(*threshold)


# ------------------------------------------------------------------- client process
async def client_main(url: str, n: int, seconds: float, offset: int) -> None:
    from rspp.transports import SUBPROTOCOL_JSON, Start, encode_message

    loop = asyncio.get_running_loop()
    start = encode_message(Start(sample_rate=16000)).decode()
    lateness: list[float] = []
    lost = reordered = expected = 0
    sent_at: list[dict[int, float]] = [{} for _ in range(n)]
    last: list[dict[int, int]] = [{} for _ in range(n)]
    owed: dict[tuple[int, int], int] = {}  # reply frames still due per measured utterance
    measuring = [False]

    def on_message(k: int, msg: bytes | str, now: float) -> None:
        nonlocal lost, reordered
        if not isinstance(msg, bytes):
            return
        u, idx = struct.unpack_from(">II", msg)  # the utterance this frame answers
        ends = sent_at[k]
        if u not in ends:
            return
        prev = last[k].get(u, -1)
        if idx != prev + 1:
            if idx <= prev:
                reordered += 1
            else:
                lost += idx - prev - 1
        last[k][u] = idx
        if (k, u) in owed:
            owed[(k, u)] -= 1
        if measuring[0]:
            due = ends[u] + 0.200 + idx * 0.020
            lateness.append(max(0.0, (now - due) * 1000))

    conns: list[WsClient] = []
    for i in range(n):
        ws = await WsClient.open(f"{url}/v1/sessions/s{offset + i}/ws?token=bench",
                                 functools.partial(on_message, i), [SUBPROTOCOL_JSON])
        ws.send(start)
        conns.append(ws)
    frame = bytes(640)
    # staggered phases: session k's cycle starts k * CYCLE / n frames later
    phase = [(k * CYCLE_FRAMES) // n for k in range(n)]
    total = int((seconds + 3.0) * 50)
    warm = 150
    closed: set[int] = set()  # connections the server closed (their replies stop)

    cpu_at = [0.0, 0.0]  # client CPU seconds and loop time when measuring starts

    def at_frame(f: int) -> None:
        if f == warm:
            measuring[0] = True
            cpu_at[:] = cpu_seconds(), loop.time()
            print("START", flush=True)

    def send(k: int, f: int) -> None:
        nonlocal expected
        local = f - phase[k]
        if local < 0 or k in closed:
            return
        if not conns[k].send(frame):  # e.g. 4429: the server closed a client that fell behind
            closed.add(k)
            return
        if local % CYCLE_FRAMES == SPEECH_END:
            sent_at[k][local // CYCLE_FRAMES] = time.monotonic()
            if measuring[0]:
                expected += REPLY_FRAMES
                owed[(k, local // CYCLE_FRAMES)] = REPLY_FRAMES

    await send_ticks(n, total + 1, send, at_frame=at_frame)
    await asyncio.sleep(0.8)  # the last replies finish
    closed.update(k for k, ws in enumerate(conns) if ws.closed)
    for ws in conns:
        ws.close()
    print("RESULT " + json.dumps({
        "frames": len(lateness), "expected": expected, "lost": lost, "reordered": reordered,
        "closed": len(closed),
        "close_reasons": sorted({str(conns[k].close_reason) for k in closed}),
        "missing": sum(max(0, v) for v in owed.values()),
        "p50_ms": round(percentile(lateness, 50), 2), "p99_ms": round(percentile(lateness, 99), 2),
        "client_cpu_cores": round((cpu_seconds() - cpu_at[0]) / (loop.time() - cpu_at[1]), 3),
        "measured_s": round(loop.time() - cpu_at[1], 2)}), flush=True)


def _frames(hub: SessionHub) -> int:
    """Audio frames every session took in and sent out so far."""
    return sum(h.transport.meter.frames + h.transport.frames_out
               for h in hub.sessions.values())


async def _loop_lag(out: list[float], period_s: float = 0.005) -> None:
    """How late this loop wakes a timer (ms), sampled every ``period_s``."""
    loop = asyncio.get_running_loop()
    due = loop.time() + period_s
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        now = loop.time()
        out.append((now - due) * 1000)
        due = now + period_s


class GcProbe:
    """The runtime's garbage collections while measuring: count and CPU ms per generation,
    and the longest (CPU time of this thread: robust on a loaded machine)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.cpu_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.collected = [0, 0, 0]
        self._t0 = 0.0
        self.on = False

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.on:
            return
        if phase == "start":
            self._t0 = time.thread_time()
            return
        g = info["generation"]
        ms = (time.thread_time() - self._t0) * 1000
        self.count[g] += 1
        self.collected[g] += info["collected"]
        self.cpu_ms[g] += ms
        self.max_ms[g] = max(self.max_ms[g], ms)

    def summary(self) -> dict[str, Any]:
        return {"gc_collections": self.count, "gc_cpu_ms": [round(x, 1) for x in self.cpu_ms],
                "gc_max_ms": [round(x, 2) for x in self.max_ms], "gc_collected": self.collected}


#: ``--pin``: the CPUs of the runtime (this process) and of the client processes
PINNED: dict[str, set[int]] = {}


def pin(runtime_cpus: set[int], client_cpus: set[int]) -> None:
    """Run the runtime on ``runtime_cpus`` and the client processes on ``client_cpus``."""
    PINNED.update(runtime=runtime_cpus, clients=client_cpus)
    os.sched_setaffinity(0, runtime_cpus)


def _pin_clients() -> None:
    """(In a client process before it runs) its CPUs under ``--pin``."""
    if PINNED:
        os.sched_setaffinity(0, PINNED["clients"])


async def run_point(n: int, seconds: float, procs: int, *, factory: Any = None,
                    route: Any = websocket_route, path: str = "",
                    script: str = __file__) -> dict[str, Any]:
    """One point: the runtime here, ``procs`` client processes of ``script --client``."""
    gc.collect()
    lag: list[float] = []
    pacer: list[float] = []
    probe = GcProbe()
    gc.callbacks.append(probe)
    async with runtime(factory or MockFactory(), route) as (base, hub):
        url = base + path
        rss0 = rss_mb()
        objects0 = len(gc.get_objects())
        per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        children = []
        offset = 0
        for m in per:
            children.append(await asyncio.create_subprocess_exec(
                sys.executable, script, "--client", url, str(m), str(seconds), str(offset),
                stdout=asyncio.subprocess.PIPE, preexec_fn=_pin_clients))
            offset += m
        starts = 0
        cpu0 = t0 = 0.0
        frames0 = 0
        results = []
        sampler: asyncio.Task[None] | None = None

        async def lines(proc: Any) -> None:
            nonlocal starts, cpu0, t0, sampler, frames0
            if proc.stdout is None:
                raise RuntimeError("the client's stdout is not a pipe")
            async for raw in proc.stdout:
                line = raw.decode().strip()
                if line == "START":
                    starts += 1
                    if starts == 1:
                        cpu0, t0 = cpu_seconds(), time.monotonic()
                        frames0 = _frames(hub)
                        for h in hub.sessions.values():  # the pacer's lateness from here on
                            h.transport.lateness_ms.clear()
                        sampler = asyncio.create_task(_loop_lag(lag))
                        probe.on = True
                elif line.startswith("RESULT "):
                    results.append(json.loads(line[7:]))
                    if len(results) == len(children) and sampler is not None:
                        sampler.cancel()

        await asyncio.gather(*(lines(c) for c in children))
        cpu = cpu_seconds() - cpu0
        wall = time.monotonic() - t0
        probe.on = False
        gc.callbacks.remove(probe)
        frames = _frames(hub) - frames0
        rss = rss_mb()
        objects = len(gc.get_objects())
        c0 = time.thread_time()
        gc.collect()  # one full collection with every session live: the longest pause
        full_ms = (time.thread_time() - c0) * 1000
        for h in hub.sessions.values():
            pacer.extend(h.transport.lateness_ms)
        if os.environ.get("BENCH_DEBUG"):
            ts = [h.transport for h in hub.sessions.values()]
            print("DEBUG sessions", len(ts), "frames_in", sum(t.meter.frames for t in ts),
                  "frames_out", sum(t.frames_out for t in ts), "late_in",
                  sum(t.meter.late for t in ts), "lost_in", sum(t.meter.lost for t in ts),
                  "dropped_out", sum(t.queue.dropped_audio for t in ts if t.queue), flush=True)
        for c in children:
            await c.wait()
    return {
        "sessions": n,
        # latencies: the worst client process's; counts: summed
        **{k: max(r[k] for r in results) for k in results[0] if k.endswith("_ms")},
        "frames": sum(r["frames"] for r in results),
        "expected_frames": sum(r["expected"] for r in results),
        "lost": sum(r["lost"] for r in results),
        # reply frames of measured utterances that never arrived (a reply cut short)
        "missing": sum(r.get("missing", 0) for r in results),
        "reordered": sum(r.get("reordered", 0) for r in results),
        "closed_by_server": sum(r.get("closed", 0) for r in results),
        "close_reasons": sorted({c for r in results for c in r.get("close_reasons", [])}),
        # the runtime's side: its shared pacer's lateness against each frame's due time
        # (before the send queue and socket), and how late its loop wakes a 5 ms timer
        "server_pacer_p99_ms": round(percentile(pacer, 99), 2),
        "loop_lag_p99_ms": round(percentile(lag, 99), 2),
        # loop-lag spikes: wake-ups of the 5 ms probe later than 10 / 20 / 50 ms
        "loop_lag_spikes": [sum(1 for x in lag if x > lim) for lim in (10, 20, 50)],
        **probe.summary(),
        # objects the collector tracks (a full collection visits each): at start, per session
        "gc_objects": [objects0, round((objects - objects0) / n)],
        "gc_full_ms": round(full_ms, 2),
        "cpu_cores": round(cpu / wall, 3),
        "client_cpu_cores": round(sum(r.get("client_cpu_cores", 0.0) for r in results), 3),
        "cpu_ms_per_session_s": round(cpu * 1000 / (n * wall), 3),
        # per frame the runtime took in or sent out: robust when a loaded machine starves
        # the clients (fewer frames, less CPU per session-second); None when the sessions
        # were gone before the count was read (phone calls hang up), not CPU per 1 frame
        "cpu_us_per_frame": round(cpu * 1e6 / frames, 2) if frames > 0 else None,
        "rss_mb_per_session": round(max(rss - rss0, 0.0) / n, 4),
        "load_average": round(os.getloadavg()[0], 2),
        "event_loop": loop_name(),
        # --pin: the runtime's and the clients' CPUs (None: unpinned, the OS schedules)
        "pinned": {k: sorted(v) for k, v in PINNED.items()} or None,
    }


# ------------------------------------------------------------------ latency (offline)
async def latency(turns: int) -> dict[str, Any]:
    """End of user speech -> first reply audio byte at the client, offline assistant.

    The example spec with 20 s provider timeouts and turn budget: on a busy machine the
    offline STT runs slower than real time, and a turn that times out has no first byte.
    """
    import tempfile

    import numpy as np

    from rspp.client import LiveClient
    from rspp.providers.offline import EspeakTTS
    from rspp.runner import LocalFactoryOptions, LocalSessionFactory, compile_spec_file
    from rspp.transports import AudioOut, TurnEvent

    text = SPEC.read_text()
    for old, new in (("nodes:\n", "budgets:\n  turn_ms: 20000\n\nnodes:\n"),
                     ("stt: {primary: pocketsphinx}", "stt: {primary: pocketsphinx, "
                      "timeout_ms: 20000}"),
                     ("tts: {primary: espeak}", "tts: {primary: espeak, timeout_ms: 20000}")):
        text = text.replace(old, new, 1)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    gd = compile_spec_file(Path(f.name))
    os.unlink(f.name)
    tts = EspeakTTS(sample_rate=16000, voice="en-us", words_per_minute=160)
    q = b"".join([c.pcm async for c in tts.synthesize("what is the weather like today")])
    voiced = np.nonzero(np.abs(np.frombuffer(q, dtype=np.int16)) > 500)[0]
    last_voiced_frame = int(voiced[-1]) // 320  # the 20 ms frame holding the last voiced sample
    factory = LocalSessionFactory(gd, LocalFactoryOptions(record_level=None))
    out: list[float] = []
    async with runtime(factory) as (url, _hub):
        client = await LiveClient.connect(f"{url}/v1/sessions/lat1/ws", token="bench")
        loop = asyncio.get_running_loop()
        speech_end = [0.0]
        first = asyncio.Event()
        closed = asyncio.Event()

        async def read() -> None:
            async for ev in client.events():
                if isinstance(ev, AudioOut) and speech_end[0] and not first.is_set():
                    out.append((loop.time() - speech_end[0]) * 1000)
                    first.set()
                elif isinstance(ev, TurnEvent) and ev.state == "close":
                    closed.set()

        reader = asyncio.create_task(read())
        frames = [q[i:i + 640].ljust(640, b"\0") for i in range(0, len(q), 640)]
        for _turn in range(turns):
            first.clear()
            closed.clear()
            speech_end[0] = 0.0
            t0 = loop.time()
            k = 0
            # the question, then an open microphone (silence) until the turn closes
            while k < len(frames) or not closed.is_set():
                await client.send_audio(frames[k] if k < len(frames) else bytes(640))
                if k == last_voiced_frame:
                    speech_end[0] = loop.time()
                k += 1
                if k > len(frames) + 1500:  # 30 s: give up on this turn
                    break
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))
        with contextlib.suppress(Exception):  # the server may have closed already
            await client.end()
        await asyncio.wait({reader}, timeout=60)
        with contextlib.suppress(Exception):
            await client.close()
    return {"turns": len(out), "of": turns, "p50_ms": round(percentile(out, 50), 1),
            "p95_ms": round(percentile(out, 95), 1)}


async def main(quick: bool, ns: list[int], procs: int, with_latency: bool,
               seconds: float | None = None) -> None:
    seconds = seconds or (6.0 if quick else 15.0)
    points = []
    for n in ns:
        p = await run_point(n, seconds, procs)
        points.append(p)
        print(p, flush=True)
    ok = [p for p in points if p["p99_ms"] <= 20.0 and p["lost"] == 0 and p["reordered"] == 0
          and p["missing"] == 0
          and p.get("closed_by_server", 0) == 0
          and p["frames"] > 0]
    best = max(ok, key=lambda p: p["sessions"]) if ok else None
    result: dict[str, Any] = {
        "benchmark": "ws_sessions", "capacity": best["sessions"] if best else 0,
        "cpu_ms_per_session_s": (best or points[-1])["cpu_ms_per_session_s"],
        "rss_mb_per_session": (best or points[-1])["rss_mb_per_session"],
        "points": points, "targets": {"capacity": 300, "p99_ms": 20.0},
        "pinned": points[-1].get("pinned") if points else None,
        "lateness": "p50_ms/p99_ms: at the client, reply frame arrival - (utterance end sent + "
                    "200 ms + i x 20 ms); server_pacer_p99_ms: the runtime pacer vs due time"}
    if with_latency:
        lat = await latency(5 if quick else 20)
        print(lat, flush=True)
        result["first_audio_ms"] = lat
    emit(result)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _, _, url, n, secs, off = sys.argv
        run_loop(client_main(url, int(n), float(secs), int(off)))
        sys.exit(0)
    ap = quick_parser(__doc__)
    ap.add_argument("--sessions", default=None, help="comma-separated N values")
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=None,
                    help="measured seconds per point (default 15, --quick 6)")
    ap.add_argument("--latency", action="store_true",
                    help="also: end of speech -> first reply audio, offline, 20 turns")
    ap.add_argument("--pin", action="store_true",
                    help="runtime on CPU 0, client processes on the other CPUs")
    a = ap.parse_args()
    if a.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            ap.error("--pin needs at least 2 CPUs")
        pin({cpus[0]}, set(cpus[1:]))
    default = "50,100" if a.quick else "100,200,300,400"
    run_loop(main(a.quick, [int(x) for x in (a.sessions or default).split(",")],
                  a.client_procs, a.latency, a.seconds))
