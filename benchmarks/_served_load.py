"""Load on the served path, gated by the product: ``rspp serve``, clients, ``rspp slo report``.

:class:`Served` is ``rspp serve`` (embedded control plane on SQLite) as a child process
writing every session's timeline (``--timeline-dir``); :func:`talk` is one live client
(routed by the control plane, :class:`~rspp.client.LiveClient` over WebSocket) speaking
real audio (espeak-ng speech, 20 ms frames in real time, an open microphone of silence
between utterances) and, with an interruption, speaking it over the reply once reply
audio arrives (a barge-in); :func:`slo_report` runs the product's
``rspp slo report TIMELINES --spec SPEC --json`` over the recorded timelines.

The voice pipeline (:func:`voice_spec`) is the offline assistant's graph with the Deepgram
STT adapter against :class:`~rspp.testing.fakes.FakeProviderServers` (its real streaming
protocol on loopback; the recogniser is the one remote provider we cannot run here), the
local LLM and espeak-ng TTS; its ``slo:`` block holds the gate thresholds.

Used by ``benchmarks/served_slo.py``, ``benchmarks/pool_saturation.py`` and
``tests/e2e/test_served_slo_gates.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from rspp.client import LiveClient, SessionRefusedError, route_session
from rspp.testing import PATIENT_BUDGETS, SILENCE_VAD, voice_assistant_spec
from rspp.transports import AudioOut, Clear, TurnEvent

REPO = Path(__file__).resolve().parents[1]
RSPP = [sys.executable, "-c", "from rspp.cli import main; main()"]
KEY = "served-load-admin-key"
RATE = 16000
FRAME = RATE // 50 * 2  # bytes of one 20 ms PCM16 frame
SILENCE = bytes(FRAME)


#: the VAD -> STT edges deep enough for a loaded machine (as the served voice e2e tests): a
#: recogniser that falls behind for a while must not lose an utterance's audio, nor its
#: end-of-speech event, to shedding (a lost end leaves the turn open until its budget)
DEEP_STT_EDGE = "{max_queue_ms: 20000, max_queue_items: 5000, max_latency_contribution_ms: 20000}"


def voice_spec(name: str, slo: Mapping[str, float]) -> str:
    """The voice assistant on the (fake) Deepgram STT with ``slo`` as its gate thresholds."""
    body = ", ".join(f"{k}: {v:g}" for k, v in slo.items())
    return voice_assistant_spec(name, head=PATIENT_BUDGETS, vad=SILENCE_VAD,
                                stt="{primary: deepgram, timeout_ms: 20000}",
                                buffers={"stt.audio": DEEP_STT_EDGE, "stt.vad": DEEP_STT_EDGE},
                                tail=f"slo: {{{body}}}" if body else "")


@contextlib.contextmanager
def fake_providers() -> Iterator[dict[str, str]]:
    """``python -m rspp.testing.fakes`` in its own process (the fakes do not share the
    clients' interpreter); yields their ``*_BASE_URL``/``*_API_KEY`` environment."""
    proc = subprocess.Popen([sys.executable, "-m", "rspp.testing.fakes"], cwd=REPO,
                            env=provider_env({}), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        env: dict[str, str] = {}
        if proc.stdout is None:
            raise RuntimeError("the fakes' stdout is not a pipe")
        for line in proc.stdout:  # the export lines, printed at once when ready
            name, _, value = line.strip().removeprefix("export ").partition("=")
            env[name] = value
            if len(env) == 8:  # 4 vendors x (base URL, key)
                break
        if len(env) != 8:
            raise RuntimeError(f"the fake providers did not start: {env}")
        yield env
    finally:
        proc.kill()
        proc.wait(timeout=30)


def provider_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without RSPP_* settings or provider keys/URLs, plus
    ``extra`` (the fakes' ``*_BASE_URL``/``*_API_KEY``)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RSPP_") and not k.endswith(("_API_KEY", "_BASE_URL"))}
    env.update(extra)
    return env


async def speech(text: str) -> bytes:
    """``text`` spoken by espeak-ng as 16 kHz PCM16."""
    from rspp.providers.offline import EspeakTTS

    tts = EspeakTTS(sample_rate=RATE, voice="en-us", words_per_minute=175)
    return b"".join([chunk.pcm async for chunk in tts.synthesize(text)])


class Served:
    """``rspp serve SPEC`` with an embedded control plane, every timeline under ``work``."""

    def __init__(self, spec: Path, work: Path, *args: str, env: Mapping[str, str]) -> None:
        self.work = work
        self.timeline_dir = work / "timelines"
        self.log = work / "serve.log"
        self.args = [str(spec), "--port", "0", "--db", f"sqlite+aiosqlite:///{work / 'cp.db'}",
                     "--api-key", KEY, "--timeline-dir", str(self.timeline_dir),
                     "--drain-deadline", "10", *args]
        self.env = dict(env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def _spawn(self) -> None:
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*RSPP, "serve", *self.args], cwd=REPO, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    async def __aenter__(self) -> Served:
        self._spawn()
        try:
            await self._ready()
        except BaseException:
            self.kill()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        self.kill()

    async def _ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.url:
            banner = self.log.read_text(errors="replace")
            m = re.search(r"runtime \S+ ready on (http://\S+)", banner)
            if m:
                self.url = m.group(1)
            elif self.proc is None or self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rspp serve did not start:\n{self.log.read_text()}")
            else:
                await asyncio.sleep(0.05)  # the banner line: nothing to await on a child
        async with httpx.AsyncClient(timeout=30) as http:
            while (await http.get(f"{self.url}/readyz")).status_code != 200:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # another process's probe: polled

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=30) as http:
            return (await http.get(f"{self.url}/metrics")).text

    async def publish(self, spec_text: str, filename: str) -> None:
        """Publish another pipeline into the embedded control plane."""
        async with httpx.AsyncClient(timeout=30) as http:
            res = await http.post(f"{self.url}/v1/pipelines", headers={
                "Authorization": f"Bearer {KEY}"}, json={"spec": spec_text, "filename": filename})
        if res.status_code != 201:
            raise RuntimeError(f"publish {filename}: {res.status_code} {res.text}")

    async def stop(self, timeout_s: float = 120.0) -> int:
        """SIGTERM (drain) and wait: every session's timeline is complete once it exited."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            return int(await asyncio.wait_for(loop.run_in_executor(None, proc.wait), timeout_s))
        except TimeoutError:
            self.kill()  # a drain that never ends: reported as the exit status
            return -signal.SIGKILL

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def timelines(self) -> list[Path]:
        return sorted(self.timeline_dir.glob("*.jsonl"))


@dataclass(slots=True)
class TalkResult:
    """What one client saw: turns by outcome, barge-in clears and first-audio latencies."""

    session_id: str = ""
    closed: int = 0
    committed: int = 0
    aborted: int = 0
    cleared: int = 0
    #: end of the client's utterance (last frame sent) -> first reply frame (ms)
    first_audio_ms: list[float] = field(default_factory=list)
    error: str | None = None


class _Mic:
    """One client's microphone: utterances in real time, silence in between."""

    def __init__(self, client: LiveClient, res: TalkResult) -> None:
        self.client = client
        self.res = res
        self.changed = asyncio.Event()
        self.audio = False
        self.spoke_at = 0.0

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        async for ev in self.client.events():
            if isinstance(ev, AudioOut):
                if not self.audio and self.spoke_at:
                    self.res.first_audio_ms.append((loop.time() - self.spoke_at) * 1000)
                self.audio = True
            elif isinstance(ev, Clear):
                self.res.cleared += 1
            elif isinstance(ev, TurnEvent):
                if ev.state == "commit":
                    self.res.committed += 1
                elif ev.state == "abort":
                    self.res.aborted += 1
                elif ev.state == "close":
                    self.res.closed += 1
            self.changed.set()
        self.changed.set()

    async def speak(self, pcm: bytes) -> None:
        await self.client.stream_pcm(pcm, RATE)
        self.spoke_at = asyncio.get_running_loop().time()

    async def hold(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Silence in real time until ``done()`` (checked per frame); TimeoutError after
        ``timeout_s``."""
        loop = asyncio.get_running_loop()
        start = t0 = loop.time()
        k = 0
        while not done():
            if loop.time() - start > timeout_s:
                raise TimeoutError(f"no progress in {timeout_s:g} s")
            await self.client.send_audio(SILENCE)
            k += 1
            late = loop.time() - (t0 + k * 0.02)
            if late > 0.1:  # this process was descheduled: a microphone does not catch up
                t0 += late  # on silence (a burst of it is no speech, and may flood)
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - loop.time()))

    async def pause(self, seconds: float) -> None:
        """Silence in real time for ``seconds``."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        await self.hold(lambda: loop.time() >= until, seconds + 60)


async def talk(url: str, *, pipeline: str, question: bytes, rounds: int,
               interrupt: bytes | None = None, barge_after_s: float = 0.3,
               tenant: str = "acme", start_after_s: float = 0.0,
               turn_timeout_s: float = 90.0) -> TalkResult:
    """One live session of ``pipeline``: ``rounds`` times, speak ``question`` and wait for
    its turn to close; with ``interrupt``, speak it ``barge_after_s`` after the reply's
    first audio frame (over the reply) and wait for both turns to close. Ends the session
    and waits until the runtime closed the connection."""
    res = TalkResult()
    await asyncio.sleep(start_after_s)
    try:
        target = await route_session(url, tenant_id=tenant, api_key=KEY,
                                     pipeline_name=pipeline, timeout_s=60)
        res.session_id = target.session_id
        # a loaded runtime starting many sessions at once may take long to say ``ready``
        client = await LiveClient.connect(target.url, token=target.token, open_timeout=60)
    except SessionRefusedError as exc:
        res.error = f"{res.session_id or 'route'}: {exc}"
        return res
    mic = _Mic(client, res)
    reader = asyncio.create_task(mic.read())

    def closed(n: int) -> Callable[[], bool]:
        return lambda: res.closed >= n

    def audio_or_closed(n: int) -> Callable[[], bool]:
        return lambda: mic.audio or res.closed >= n

    try:
        for _ in range(rounds):
            want = res.closed + (1 if interrupt is None else 2)
            mic.audio = False
            await mic.speak(question)
            if interrupt is not None:
                await mic.hold(audio_or_closed(want - 1), turn_timeout_s)
                await mic.pause(barge_after_s)
                mic.audio = False
                await mic.speak(interrupt)
            await mic.hold(closed(want), turn_timeout_s)
        await client.end()
        await asyncio.wait_for(reader, turn_timeout_s)
    except (TimeoutError, OSError, ConnectionError, ConnectionClosed) as exc:
        res.error = f"{res.session_id}: {exc!r}"
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
        with contextlib.suppress(Exception):
            await client.close()
    return res


def slo_report(timelines: list[Path], spec: Path) -> tuple[int, dict[str, Any], str]:
    """``rspp slo report TIMELINES --spec SPEC --json``: (exit status, report, stderr)."""
    res = subprocess.run([*RSPP, "slo", "report", *map(str, timelines), "--spec", str(spec),
                          "--json"], capture_output=True, text=True, cwd=REPO, timeout=600,
                         check=False, env=provider_env({}))
    try:
        doc: dict[str, Any] = json.loads(res.stdout) if res.stdout.strip() else {}
    except ValueError:
        doc = {}
    return res.returncode, doc, res.stderr


def gate_summary(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{gate name: {status, threshold, count, p50, p95, p99}}`` of an slo report."""
    return {g["name"]: {k: g[k] for k in ("status", "threshold", "count", "p50", "p95", "p99")}
            for g in report.get("gates", [])}


def metric(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the first Prometheus sample ``name{labels...}`` (None: no such sample)."""
    for line in exposition.splitlines():
        if line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def histogram_by(exposition: str, name: str, label: str) -> dict[str, dict[str, float]]:
    """Per value of ``label``: count and mean (ms) of the seconds histogram ``name``."""
    sums: dict[str, list[float]] = {}
    for line in exposition.splitlines():
        for part, slot in (("_sum{", 0), ("_count{", 1)):
            if line.startswith(name + part):
                got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
                key = got.get(label, "")
                sums.setdefault(key, [0.0, 0.0])[slot] += float(line.rsplit(" ", 1)[1])
    return {k: {"count": c, "mean_ms": round(s * 1000 / c, 2) if c else 0.0}
            for k, (s, c) in sums.items()}
