"""Failure-matrix fixtures: the real ``rspp`` command (run, serve, cp serve) and readers.

Every scenario drives a real session through a product entry point: ``rspp run`` on a
spoken WAV, or ``rspp serve`` (embedded control plane, or beside ``rspp cp serve``)
talked to by the real client (:class:`rspp.client.LiveClient`). Fault injection uses
what a user or operator has: a custom node in the spec, a provider endpoint that
stalls (the fake speaking the vendor's wire protocol), an edge buffer, a dropped
socket, control-plane API calls. Waits are on events (banner lines, client events,
timeline records), each bounded; no sleeps stand in for synchronisation.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rspp.testing import with_patient_budgets
from rspp.transports import write_wav

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
CLI = [sys.executable, "-c", "from rspp.cli import main; main()"]
ADMIN = "failure-matrix-admin-key"
RATE = 16000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.failure_matrix)


def env(**extra: str) -> dict[str, str]:
    """The environment of a child ``rspp``: no ambient RSPP_*, this directory importable."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), out.get("PYTHONPATH")) if p)
    out.update(extra)
    return out


def rspp(*args: str, extra_env: dict[str, str] | None = None,
         timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=REPO, env=env(**(extra_env or {})))


def spec_with(tmp: Path, name: str, edits: Iterable[tuple[str, str]],
              base: Path = VOICE) -> Path:
    """A copy of ``base`` with each ``(old, new)`` replaced once (old must be there)."""
    text = base.read_text()
    for old, new in edits:
        assert old in text, f"{base.name} changed: {old!r} is gone; update the scenario"
        text = text.replace(old, new, 1)
    path = tmp / name
    path.write_text(text)
    return path


Line = dict[str, Any]


def read_timeline(path: Path) -> list[Line]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def signals(lines: list[Line], *names: str) -> list[dict[str, Any]]:
    return [ln["record"] for ln in lines if ln["kind"] == "control_signal"
            and (not names or ln["record"]["signal"] in names)]


def assert_valid(timeline: Path) -> None:
    """Every record of the timeline satisfies the wire contract: ``rspp contracts validate``
    (the command itself, run in this process to save an interpreter start)."""
    from typer.testing import CliRunner

    from rspp.cli._app import app

    res = CliRunner().invoke(app, ["contracts", "validate", str(timeline)])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"{timeline}: valid", res.output


_TERMINAL = ("commit", "abort")


def assert_lifecycles(lines: list[Line]) -> dict[str, list[tuple[str, str | None]]]:
    """DESIGN 1, invariant 2: every opened turn has exactly one terminal, then ``close``,
    and nothing of its lifecycle after that; a turn that never opened has neither.
    Returns each turn's lifecycle signals ``(signal, reason)`` in order."""
    turns: dict[str, list[tuple[str, str | None]]] = {}
    for rec in signals(lines, "turn_open", "commit", "abort", "close", "deauthorized_drain"):
        if rec.get("turn_id"):
            turns.setdefault(rec["turn_id"], []).append((rec["signal"], rec.get("reason")))
    for turn, seq in turns.items():
        names = [s for s, _ in seq]
        if "turn_open" not in names:
            assert not set(names) & {"commit", "abort", "close"}, (turn, seq)
            continue
        terminals = [n for n in names if n in _TERMINAL]
        assert len(terminals) == 1, (turn, seq)
        assert names[-1] == "close" and names.count("close") == 1, (turn, seq)
        assert names.index(terminals[0]) == len(names) - 2, (turn, seq)
    return turns


def run_json(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out: dict[str, Any] = json.loads(res.stdout)
    return out


@pytest.fixture(scope="session")
def question(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    """"what is the weather like today" (espeak-ng, 16 kHz): PCM and a WAV with a tail."""
    from rspp.providers.offline import EspeakTTS

    async def say() -> bytes:
        tts = EspeakTTS(sample_rate=RATE, voice="en-us", words_per_minute=175)
        return b"".join([c.pcm async for c in tts.synthesize("what is the weather like today")])

    pcm = asyncio.run(say())
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    write_wav(path, pcm + bytes(RATE), RATE)
    return pcm, path


@pytest.fixture(scope="session")
def two_questions(question: tuple[bytes, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    pcm, _ = question
    path = tmp_path_factory.mktemp("speech") / "two_questions.wav"
    write_wav(path, pcm + bytes(RATE * 3) + pcm + bytes(RATE), RATE)
    return path


# ---------------------------------------------------------------- served sessions
@dataclass
class Process:
    """A child ``rspp`` server; ``url`` and ``runtime_id`` come from its banner."""

    proc: asyncio.subprocess.Process
    url: str = ""
    runtime_id: str = ""
    banner: list[str] = field(default_factory=list)

    async def wait_banner(self, pattern: str, timeout_s: float = 90) -> re.Match[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout_s):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = await self.proc.stderr.read() if self.proc.stderr else b""
                    raise AssertionError(f"exited {await self.proc.wait()}: {err.decode()}")
                line = raw.decode().rstrip()
                self.banner.append(line)
                found = re.search(pattern, line)
                if found:
                    return found

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout_s):
            return await self.proc.wait()


@pytest.fixture
async def launch() -> AsyncIterator[Callable[..., Any]]:
    """``await launch(*rspp_args)``: a started child process; every one is stopped after."""
    started: list[Process] = []

    async def start(*args: str) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *CLI, *args, cwd=REPO, env=env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        p = Process(proc)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def serve(launch: Callable[..., Any], tmp: Path, *args: str) -> Process:
    """``rspp serve ARGS --port 0 --timeline-dir TMP/timelines`` (embedded: ``--db TMP/cp.db``),
    ready (banner + /readyz)."""
    own_db = () if "--control-plane" in args else ("--db", str(tmp / "cp.db"))
    p: Process = await launch("serve", *args, *own_db, "--port", "0", "--api-key", ADMIN,
                              "--timeline-dir", str(tmp / "timelines"))
    found = await p.wait_banner(r"runtime (\S+) ready on (http://\S+)")
    p.runtime_id, p.url = found.group(1), found.group(2)
    async with httpx.AsyncClient() as http:
        async with asyncio.timeout(60):
            while True:  # a readiness probe, polled (bounded)
                if (await http.get(f"{p.url}/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
    return p


class ControlPlaneAPI:
    """The control-plane HTTP API with the admin key (the operator's hands)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=30,
                                      headers={"Authorization": f"Bearer {ADMIN}"})

    async def call(self, method: str, path: str, body: Any = None,
                   expect: int | tuple[int, ...] = (200, 201)) -> Any:
        response = await self.http.request(method, path, json=body)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in wanted, (method, path, response.status_code,
                                                 response.text)
        return response.json()

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def cp_api() -> AsyncIterator[Callable[[str], ControlPlaneAPI]]:
    made: list[ControlPlaneAPI] = []

    def make(url: str) -> ControlPlaneAPI:
        api = ControlPlaneAPI(url)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.aclose()


async def session_timeline(tmp: Path, session_id: str, timeout_s: float = 60) -> list[Line]:
    """The served session's timeline once it holds the session's ``ended`` signal."""
    path = tmp / "timelines" / f"{session_id}.jsonl"
    async with asyncio.timeout(timeout_s):
        while True:
            if path.exists():
                lines = read_timeline_lenient(path)
                if signals(lines, "ended"):
                    return lines
            await asyncio.sleep(0.05)


def read_timeline_lenient(path: Path) -> list[Line]:
    """Complete lines only (the writer may be mid-line)."""
    out = []
    for raw in path.read_text().splitlines(keepends=True):
        if raw.endswith("\n") and raw.strip():
            out.append(json.loads(raw))
    return out


class Talker:
    """A real client on one session: speaks on request, silence otherwise; keeps every event.

    ``say()`` queues the question; between questions the client streams silence in real
    time (a live microphone). ``until(pred)`` waits for the first event matching ``pred``.
    """

    def __init__(self, client: Any, question: bytes) -> None:
        self.client = client
        self.question = question
        self.events: list[Any] = []
        self._asks: asyncio.Queue[bytes] = asyncio.Queue()
        self._new = asyncio.Event()
        self._tasks = [asyncio.create_task(self._speak()), asyncio.create_task(self._listen())]

    def say(self) -> None:
        self._asks.put_nowait(self.question)

    async def _speak(self) -> None:
        silence = bytes(RATE * 2 // 50 * 5)  # 100 ms
        while True:
            pcm = self._asks.get_nowait() if not self._asks.empty() else silence
            await self.client.stream_pcm(pcm)

    async def _listen(self) -> None:
        async for ev in self.client.events():
            self.events.append(ev)
            self._new.set()
        self._new.set()

    @property
    def closed(self) -> bool:
        return self._tasks[1].done()

    async def until(self, pred: Callable[[Any], bool], since: int = 0,
                    timeout_s: float = 90) -> Any:
        async with asyncio.timeout(timeout_s):
            while True:
                for ev in self.events[since:]:
                    if pred(ev):
                        return ev
                assert not self.closed, f"connection closed; events: {self.events[-5:]}"
                self._new.clear()
                await self._new.wait()

    async def finish(self) -> None:
        """Stop speaking, send ``end``; wait for the server to close the connection."""
        speaker = self._tasks[0]
        speaker.cancel()
        await asyncio.wait({speaker})
        if not self.closed:
            await self.client.end()
        async with asyncio.timeout(90):
            await asyncio.wait({self._tasks[1]})

    async def closed_by_server(self, timeout_s: float = 60) -> None:
        """Wait until the server closes the connection; then stop speaking."""
        async with asyncio.timeout(timeout_s):
            await asyncio.wait({self._tasks[1]})
        speaker = self._tasks[0]
        speaker.cancel()
        await asyncio.wait({speaker})

    async def abort(self) -> None:
        """The network drops: no close handshake, no more audio."""
        speaker = self._tasks[0]
        speaker.cancel()
        await asyncio.wait({speaker})
        self.client.ws.transport.abort()
        await asyncio.wait({self._tasks[1]})


def turn_event(state: str, turn: str | None = None) -> Callable[[Any], bool]:
    from rspp.transports import TurnEvent

    return lambda ev: (isinstance(ev, TurnEvent) and ev.state == state
                       and (turn is None or ev.turn_id == turn))


async def open_session(api: ControlPlaneAPI, question: bytes, tenant: str = "acme"
                       ) -> tuple[dict[str, Any], Talker]:
    """Route a session through the control plane and connect the real client to it."""
    from rspp.client import LiveClient, session_url

    route = await api.call("POST", "/v1/sessions/route",
                           {"tenant_id": tenant, "pipeline_name": "voice-assistant"})
    client = await LiveClient.connect(session_url(route["endpoint"], route["session_id"]),
                                      token=route["token"])
    return route, Talker(client, question)


def patient_voice(tmp: Path) -> Path:
    spec = tmp / "voice.yaml"
    spec.write_text(with_patient_budgets(VOICE.read_text()))
    return spec


@dataclass
class Embedded:
    srv: Process
    api: ControlPlaneAPI
    tmp: Path


@pytest.fixture
async def embedded(launch: Callable[..., Any], cp_api: Callable[[str], ControlPlaneAPI],
                   tmp_path: Path) -> Embedded:
    """``rspp serve`` (embedded control plane, the patient voice assistant) and its API."""
    srv = await serve(launch, tmp_path, str(patient_voice(tmp_path)))
    return Embedded(srv, cp_api(srv.url), tmp_path)


async def ask_first_question(api: ControlPlaneAPI, question: bytes
                             ) -> tuple[dict[str, Any], Talker, Any]:
    """Route and connect a session, ask the question; returns when its turn opened."""
    route, talker = await open_session(api, question)
    talker.say()
    return route, talker, await talker.until(turn_event("open"))
