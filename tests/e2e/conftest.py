"""End-to-end fixtures: the real ``rspp`` command in a subprocess, and spoken WAVs."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from jsonschema import Draft202012Validator

from rspp.client import LiveClient, SessionTarget, route_session
from rspp.testing import (
    DOMAIN_STT,
    SILENCE_VAD,
    TEXT_CHAT_SPEC,
    voice_assistant_spec,
    with_patient_budgets,
)
from rspp.testing.fakes import FakeProviderServers
from rspp.testing.processes import RsppCli, ServeProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def rspp_cli() -> RsppCli:
    return RsppCli(REPO)


@pytest.fixture(scope="session")
def spoken(rspp_cli: RsppCli, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A question and an interruption, synthesised once per test session."""
    d = tmp_path_factory.mktemp("spoken")
    return {
        "question": rspp_cli.say("what is the weather like today", d / "q.wav"),
        "interrupt": rspp_cli.say("what is your name", d / "i.wav"),
    }


@pytest.fixture(scope="session")
def demo_replay_dir() -> Callable[[Path, int], Path]:
    """Writes the replay demo into a directory: specs ``v1.yaml`` and ``v2.yaml`` (another
    reply prefix) and ``baseline.jsonl``, a session of N utterances recorded on v1."""
    import asyncio

    import msgspec

    from rspp.replay import RigOptions
    from rspp.runner import (
        DEMO_PROVIDER_TYPES,
        DEMO_SPEC,
        demo_frames,
        demo_registry,
        record_session,
    )
    from rspp.spec import compile_spec, load_spec

    def write(root: Path, utterances: int) -> Path:
        (root / "v1.yaml").write_text(DEMO_SPEC.format(version="1.0.0", prefix="heard: "))
        (root / "v2.yaml").write_text(DEMO_SPEC.format(version="2.0.0", prefix="HEARD> "))
        gd = compile_spec(load_spec(root / "v1.yaml"))
        lines = asyncio.run(record_session(
            gd, demo_frames(utterances), registry=demo_registry(),
            options=RigOptions(provider_node_types=DEMO_PROVIDER_TYPES)))
        (root / "baseline.jsonl").write_bytes(b"".join(msgspec.json.encode(ln) + b"\n"
                                                       for ln in lines))
        return root

    return write


@pytest.fixture(scope="session")
def text_chat_spec() -> str:
    """The text-only chat spec (input text -> local LLM -> output text) with patient budgets,
    shared by the served text and debug-capture tests."""
    return TEXT_CHAT_SPEC


#: the overload pipeline's slow node (``overload_pipeline``)
OVERLOAD_METER = textwrap.dedent('''
    import asyncio

    from rspp import Event, Node


    class Meter(Node):
        """Slow for its first 70 frames (about 4 s of work), then quick."""
        inputs = ("audio",)
        outputs = ("level",)
        port_types = {"audio": "audio"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.n = 0

        async def process(self, event: Event, port: str):
            self.n += 1
            if self.n <= 70:
                await asyncio.sleep(0.06)  # three frames' worth of work per frame
            return None
''')

OVERLOAD_SPEC = voice_assistant_spec(
    "overload", vad=SILENCE_VAD,
    head="budgets: {turn_ms: 120000, node_ms: 60000, path_ms: 120000, provider_timeout_ms: 60000}"
         "\noverload: {shed_threshold: 3, window_ms: 2000, recover_after_ms: 1000,\n"
         "           degrade_providers: {llm: local-responder}}",
    providers=f"  stt: {DOMAIN_STT}\n  llm: {{primary: local, fallbacks: [local-responder]}}\n"
              "  tts: {primary: espeak}",
    # the ports declared too: the control plane of ``rspp serve`` runs no node code
    nodes=['{id: meter, type: "python:overload_nodes:Meter",\n'
           '     ports: {inputs: [{name: audio, type: audio}],\n'
           '             outputs: [{name: level, type: any}]}}'],
    edges=["{from: input.audio, to: meter.audio,\n"
           "     buffer: {strategy: %(strategy)s, max_queue_items: 2%(block)s}}"])


@pytest.fixture(scope="session")
def overload_pipeline() -> Callable[[Path, str], Path]:
    """``overload_pipeline(directory, strategy)``: the overload spec (its ``meter`` node
    reads input audio through a 2-frame ``strategy`` buffer - ``drop`` or ``block`` - and
    is slow for its first 70 frames, so the edge sheds in real time; the spec's overload
    posture degrades the LLM to ``local-responder``) and its node module, written to
    ``directory``; the spec's path (run or serve it with ``directory`` as the working
    directory or beside the spec)."""

    def write(directory: Path, strategy: str) -> Path:
        (directory / "overload_nodes.py").write_text(OVERLOAD_METER)
        block = ", max_block_time_ms: 20" if strategy == "block" else ""
        spec = directory / "overload.yaml"
        spec.write_text(OVERLOAD_SPEC % {"strategy": strategy, "block": block})
        return spec

    return write


def patient_voice_spec(directory: Path) -> Path:
    """The offline assistant with patient wall-clock budgets (served sessions enforce them
    and the machine may be busy), written to ``directory/voice.yaml``."""
    spec = directory / "voice.yaml"
    spec.write_text(with_patient_budgets(
        (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()))
    return spec


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Start ``rspp serve`` processes; every one still running is killed at teardown."""
    yield from _serve_processes()


@pytest.fixture(scope="module")
def module_serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """:func:`serve_process` shared by the tests of one module (killed after the last)."""
    yield from _serve_processes()


@pytest.fixture(scope="module")
def embedded_serve(
    module_serve_process: Callable[..., ServeProcess], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., tuple[ServeProcess, Path]]:
    """``embedded_serve(api_key, *args)``: a ready embedded ``rspp serve`` of
    :func:`patient_voice_spec` on SQLite, shared by the module; (process, timeline dir)."""

    def start(api_key: str, *args: str) -> tuple[ServeProcess, Path]:
        d = tmp_path_factory.mktemp("serve")
        srv = module_serve_process(str(patient_voice_spec(d)), "--db",
                                   f"sqlite+aiosqlite:///{d / 'cp.db'}", "--api-key", api_key,
                                   "--timeline-dir", str(d / "timelines"), *args)
        return srv.wait_ready(), d / "timelines"

    return start


class ServedChat(NamedTuple):
    """A ready ``rspp serve`` of the text chat spec (:data:`TEXT_CHAT_SPEC`, pipeline
    ``text-chat``) with its embedded control plane on SQLite and ``--timeline-dir``."""

    srv: ServeProcess
    spec: Path
    timelines: Path
    key: str

    async def route(self, tenant_id: str = "acme") -> SessionTarget:
        """A session route of ``text-chat`` for ``tenant_id``."""

        return await route_session(self.srv.url, tenant_id=tenant_id, api_key=self.key,
                                   pipeline_name="text-chat")

    def timeline(self, session_id: str) -> Path:
        return self.timelines / f"{session_id}.jsonl"

    def lines(self, session_id: str) -> list[dict[str, Any]]:
        """The session's timeline lines written so far (complete ones; none: [])."""
        import json

        path = self.timeline(session_id)
        text = path.read_text() if path.exists() else ""
        return [json.loads(x) for x in text.splitlines() if x.endswith("}")]

    def records(self, session_id: str) -> list[dict[str, Any]]:
        """The records of the session's timeline written so far."""
        return [line["record"] for line in self.lines(session_id)]

    async def until(self, session_id: str,
                    found: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Wait until the timeline the server writes asynchronously shows ``found``."""
        import asyncio

        while not found(self.records(session_id)):  # noqa: ASYNC110 (polls the file)
            await asyncio.sleep(0.05)

    async def connect(self) -> tuple[LiveClient, str]:
        """A connected client of a new ``acme`` session, and the session's id."""
        target = await self.route()
        client = await LiveClient.connect(target.url, token=target.token)
        return client, client.ready.session_id

    def set_policy(self, tenant_id: str, body: dict[str, Any]) -> None:
        """``POST /v1/configs/policy/TENANT`` as the admin key; fails the test if refused."""
        import httpx

        res = httpx.post(f"{self.srv.url}/v1/configs/policy/{tenant_id}", timeout=30,
                         headers={"Authorization": f"Bearer {self.key}"}, json={"body": body})
        assert res.status_code < 300, res.text


@pytest.fixture
def served_chat(serve_process: Callable[..., ServeProcess],
                tmp_path: Path) -> Callable[..., ServedChat]:
    """``served_chat(api_key, *args)``: start :class:`ServedChat` (extra ``rspp serve``
    options in ``args``) and wait until it is ready; killed at teardown."""

    def start(api_key: str, *args: str) -> ServedChat:
        spec = tmp_path / "text_chat.yaml"
        spec.write_text(TEXT_CHAT_SPEC)
        timelines = tmp_path / "timelines"
        srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                            "--api-key", api_key, "--timeline-dir", str(timelines), *args)
        return ServedChat(srv.wait_ready(), spec, timelines, api_key)

    return start


def _serve_processes() -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> ServeProcess:
        p = ServeProcess(*args, cwd=cwd, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


#: typed text (and microphone audio to a VAD) -> OpenAI-compatible chat fake -> sentence
#: segmenter -> OpenAI-compatible speech fake
_FAKE_OPENAI_SPEC = """name: {name}
version: {version}
description: {description}
profile: simple/v1
budgets: {{turn_ms: {turn_ms}, node_ms: 20000, path_ms: 30000, edge_ms: 20000,
          provider_timeout_ms: 20000}}
providers:
  llm:
    primary: openai
    timeout_ms: {timeout_ms}
    config: {{api_key: env://OPENAI_API_KEY, model: fake, base_url: "{llm}/v1"}}
  tts:
    primary: openai-tts
    timeout_ms: {timeout_ms}
    config: {{api_key: env://OPENAI_API_KEY, model: fake, voice: alloy, base_url: "{tts}/v1"}}
nodes:
  - {{id: vad, type: vad, params: {{engine: energy, endpointing: silence, silence_ms: 500}}}}
  - {{id: llm, type: llm}}
  - {{id: segmenter, type: sentence_segmenter}}
  - {{id: tts, type: tts}}
edges:
  - {{from: input.audio, to: vad.audio}}
  - {{from: input.text, to: llm.text}}
  - {{from: llm.text, to: segmenter.text}}
  - {{from: segmenter.text, to: tts.text}}
  - {{from: tts.audio, to: output.audio}}
"""


@pytest.fixture(scope="session")
def fake_openai_spec() -> Callable[..., str]:
    """``fake_openai_spec(llm, tts, name=, version=, description=, turn_ms=, timeout_ms=)``:
    the text of a spec whose LLM and TTS are the OpenAI-compatible fakes at base URLs
    ``llm`` and ``tts`` (typed text in; ``timeout_ms``: each provider's timeout)."""

    def spec(llm: str, tts: str, *, name: str, version: str = "1.0.0",
             description: str = "", turn_ms: int, timeout_ms: int) -> str:
        return _FAKE_OPENAI_SPEC.format(name=name, version=version,
                                        description=description or name, turn_ms=turn_ms,
                                        timeout_ms=timeout_ms, llm=llm, tts=tts)

    return spec


async def _timeline_ended(timeline: Path, timeout_s: float = 60) -> None:
    import asyncio

    def done() -> bool:
        text = timeline.read_text() if timeline.exists() else ""
        return '"signal":"ended"' in text and text.endswith("\n")

    async with asyncio.timeout(timeout_s):
        while not done():  # noqa: ASYNC110 (polls the file the server writes asynchronously)
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def timeline_ended() -> Callable[..., Any]:
    """``await timeline_ended(path, timeout_s=60)``: wait until a served session wrote its
    last record (``ended``) to its timeline ``path``."""
    return _timeline_ended


def pg_execute(pg_url: str, statement: str) -> None:
    """Run one SQL statement on the PostgreSQL test database."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(pg_url)
        async with engine.begin() as conn:
            await conn.execute(text(statement))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def pg_statement(pg_url: str) -> Callable[[str], None]:
    """``pg_statement(sql)``: run one statement on the PostgreSQL test database."""
    return lambda statement: pg_execute(pg_url, statement)


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path,
                 verify: ssl.SSLContext | None = None) -> None:
    """Poll a server process's /healthz until it answers (its log in the failure);
    ``verify``: the TLS context to call an https server with."""
    import time

    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=5,
                         verify=verify if verify is not None else True).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"{url} did not become ready"
        time.sleep(0.1)


class ControlPlaneServer(NamedTuple):
    url: str
    log: Path
    proc: subprocess.Popen[str]


@pytest.fixture
def cp_serve(request: pytest.FixtureRequest,
             tmp_path: Path) -> Iterator[Callable[..., ControlPlaneServer]]:
    """``cp_serve(store, admin_key, *args, verify=None, port=None)``: ``rspp cp serve`` on
    a free port (or ``port``), ready.

    ``store`` is ``sqlite`` (a file in tmp_path) or ``postgresql`` (a fresh schema of the
    test database); returns (url, log file, process). ``verify``: the server speaks HTTPS
    (``--tls-cert`` in ``args``); the client TLS context to probe it with. Stopped, and its
    schema dropped, at teardown.
    """
    import os
    import secrets
    import signal

    from rspp.controlplane._server import free_port

    started: list[tuple[subprocess.Popen[str], str | None, str]] = []

    def start(store: str, admin_key: str, *args: str, verify: ssl.SSLContext | None = None,
              port: int | None = None) -> ControlPlaneServer:
        db = ["--db", f"sqlite:///{tmp_path / f'cp{len(started)}.db'}"]
        schema, pg_url = None, ""
        if store == "postgresql":
            pg_url = request.getfixturevalue("pg_url")
            schema = "e2e_" + secrets.token_hex(6)
            pg_execute(pg_url, f"CREATE SCHEMA {schema}")
            db = ["--db", pg_url.replace("+asyncpg", ""), "--db-schema", schema]
        port = port or free_port()
        log = tmp_path / f"cp-serve-{len(started)}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        with log.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from rspp.cli import main; main()", "cp", "serve", *db,
                 "--port", str(port), "--admin-key", admin_key, *args],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        started.append((proc, schema, pg_url))
        url = f"{'https' if verify is not None else 'http'}://127.0.0.1:{port}"
        wait_healthy(url, proc, log, verify)
        return ControlPlaneServer(url, log, proc)

    yield start
    for proc, schema, pg_url in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if schema is not None:
            pg_execute(pg_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


#: typed text -> the OpenAI adapter (its base URL and key from the environment, e.g.
#: FakeProviderServers.env) -> reply text, with budgets long enough for a call that stalls
_OPENAI_CHAT_SPEC = """name: {name}
version: 1.0.0
profile: simple/v1
budgets: {{turn_ms: 600000, node_ms: 600000, path_ms: 600000, edge_ms: 600000,
          provider_timeout_ms: 600000}}
providers:
  llm: {{primary: openai, timeout_ms: 600000, config: {{retry: {{max_retries: 0}}}}}}
nodes:
  - {{id: llm, type: llm}}
edges:
  - {{from: input.text, to: llm.text}}
  - {{from: llm.text, to: output.text}}
"""


class ReviewedCp(NamedTuple):
    """A control plane for the change-review tests: two operator keys (``author``,
    ``reviewer``) and voice-assistant 1.0.0 and 2.0.0 published by the author."""

    url: str
    author: str
    reviewer: str


@pytest.fixture
def reviewed_cp(cp_serve: Callable[..., ControlPlaneServer], rspp_cli: RsppCli,
                tmp_path: Path) -> Callable[..., ReviewedCp]:
    """``reviewed_cp(store, admin_key, *serve_flags)``: start ``rspp cp serve`` and set up
    :class:`ReviewedCp` through ``rspp cp`` (``keys create``, ``publish``)."""

    def start(store: str, admin_key: str, *flags: str) -> ReviewedCp:
        url = cp_serve(store, admin_key, *flags).url
        author, reviewer = (rspp_cli.cp("keys", "create", "--role", "operator", key=admin_key,
                                        server=url).stdout.strip().splitlines()[-1]
                            for _ in range(2))
        voice = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
        v2 = tmp_path / "v2.yaml"
        v2.write_text(voice.read_text().replace("version: 1.0.0", "version: 2.0.0"))
        for spec in (voice, v2):
            assert rspp_cli.cp("publish", str(spec), key=author, server=url).returncode == 0
        return ReviewedCp(url, author, reviewer)

    return start


class AskingSession:
    """A served session that asks typed questions and sees whether their turns open."""

    def __init__(self, client: Any, sid: str) -> None:
        self.client, self.sid, self.events = client, sid, client.events()

    async def ask(self, text: str) -> str:
        """``open`` once the turn opened, else the ``turn_deferred`` error's message."""
        from rspp.transports import ErrorEvent, TurnEvent

        await self.client.send_text(text)
        async for ev in self.events:
            if isinstance(ev, ErrorEvent):
                assert ev.code == "turn_deferred", ev
                return str(ev.message)
            if isinstance(ev, TurnEvent) and ev.state == "open":
                return "open"
        raise AssertionError("the session ended")

    async def interrupt(self) -> list[str]:
        """Cancel the open turn; its terminal states as the client saw them."""
        from rspp.transports import TurnEvent

        await self.client.interrupt()
        states: list[str] = []
        async for ev in self.events:
            if isinstance(ev, TurnEvent):
                states.append(ev.state)
                if ev.state == "close":
                    return states
        raise AssertionError("the session ended")


@pytest.fixture(scope="session")
def asking_session() -> Callable[..., Any]:
    """``await asking_session(url, api_key, pipeline, **attributes)``: route a session of
    tenant ``acme`` (with route ``attributes``) and connect an :class:`AskingSession`."""
    from rspp.client import LiveClient

    async def open_session(url: str, api_key: str, pipeline: str,
                           **attributes: str) -> AskingSession:
        target = await route_session(url, tenant_id="acme", api_key=api_key,
                                     pipeline_name=pipeline, attributes=attributes or None)
        return AskingSession(await LiveClient.connect(target.url, token=target.token),
                             target.session_id)

    return open_session


@pytest.fixture
def fake_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviderServers]:
    """The remote-provider fakes (:class:`~rspp.testing.fakes.FakeProviderServers`)
    running, their base URLs and key in the environment ``rspp serve`` children inherit."""
    with FakeProviderServers(api_key="e2e-fake-provider-key") as fakes:
        for name, value in fakes.env.items():
            monkeypatch.setenv(name, value)
        yield fakes


@pytest.fixture(scope="session")
def openai_chat_spec() -> Callable[[str], str]:
    """``openai_chat_spec(name)``: a text chat on the OpenAI adapter whose turns stay open
    as long as its (fake) provider stalls."""
    return lambda name: _OPENAI_CHAT_SPEC.format(name=name)


def _metric_sample(metrics: str, name: str, **labels: str) -> float | None:
    import re

    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="session")
def metric_sample() -> Callable[..., float | None]:
    """``metric_sample(text, name, **labels)``: the value of the first Prometheus sample
    ``name{labels...}`` in an exposition ``text`` (None: no such sample)."""
    return _metric_sample


@pytest.fixture(scope="session")
def cp_json() -> Callable[..., dict[str, Any]]:
    """``cp_json(url, api_key, *args)``: ``rspp cp ARGS`` against the control plane at
    ``url``; fails the test unless it exits 0; its JSON output."""
    import json
    import os

    def run(url: str, api_key: str, *args: str) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
        res = subprocess.run(
            [sys.executable, "-c", "from rspp.cli import main; main()", "cp", *args],
            env=dict(env, RSPP_SERVER=url, RSPP_API_KEY=api_key), capture_output=True,
            text=True, timeout=120, check=False)
        assert res.returncode == 0, res.stderr
        out: dict[str, Any] = json.loads(res.stdout)
        return out

    return run


@pytest.fixture(scope="session")
def text_turn() -> Callable[..., Any]:
    """``await text_turn(client, question)``: type one question on an open
    :class:`~rspp.client.LiveClient` session; the reply text once the turn closed (the
    turn must open, commit and close)."""
    from rspp.transports import ReplyText, TurnEvent

    async def turn(client: LiveClient, question: str) -> str:
        await client.send_text(question)
        states, text = [], []
        async for ev in client.events():
            if isinstance(ev, ReplyText):
                text.append(ev.text)
            if isinstance(ev, TurnEvent):
                states.append(ev.state)
                if ev.state == "close":
                    break
        assert states == ["open", "commit", "close"], states
        return "".join(text)

    return turn


@pytest.fixture(scope="session")
def closed_turn() -> Callable[..., Any]:
    """``await closed_turn(client, question)``: type one question on an open
    :class:`~rspp.client.LiveClient` session; the turn's id once it closed."""
    from rspp.transports import TurnEvent

    async def turn(client: LiveClient, question: str) -> str:
        await client.send_text(question)
        async for ev in client.events():
            if isinstance(ev, TurnEvent) and ev.state == "close":
                return ev.turn_id
        raise AssertionError("the session ended before the turn closed")

    return turn


#: schemathesis' examples per operation in the fuzzing phase (the coverage phase is
#: exhaustive anyway), and its data modes: rejected (negative) data never reaches a store,
#: so on PostgreSQL only the schema-valid data (boundary lengths and ranges that reach its
#: columns) is generated
_FUZZ_EXAMPLES = {"sqlite": 2, "postgresql": 1}
_FUZZ_MODES = {"sqlite": "all", "postgresql": "positive"}
_FUZZ_ADMIN = "fuzz-admin-key"


@pytest.fixture
def openapi_fuzz(cp_serve: Callable[..., ControlPlaneServer]) -> Callable[[str], int]:
    """``openapi_fuzz(store)``: ``rspp cp serve`` on ``store`` (sqlite or postgresql), seeded
    with a healthy runtime and a published pipeline so workflows can succeed, fuzzed by
    schemathesis' ``st run`` from its /openapi.json with all checks in the examples,
    coverage, fuzzing and stateful phases (config: schemathesis.toml); fails the test
    unless there are zero failures, every phase passed and the server logged no traceback;
    returns the number of generated cases (the tests require over 500)."""
    import re

    import httpx

    def run(store: str) -> None:
        url, log, _ = cp_serve(store, _FUZZ_ADMIN)
        headers = {"Authorization": f"Bearer {_FUZZ_ADMIN}"}
        runtime = {"runtime_id": "rt-fuzz", "endpoint": "ws://127.0.0.1:9/ws",
                   "capacity": 1_000_000}
        assert httpx.post(f"{url}/v1/runtimes", json=runtime, headers=headers).status_code \
            == 201
        spec = (REPO / "pipelines" / "examples" / "simple_mode.yaml").read_text()
        published = httpx.post(f"{url}/v1/pipelines", json={"spec": spec}, headers=headers)
        assert published.status_code == 201, published.text
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"), "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")), "--no-color", "run",
                f"{url}/openapi.json", "--checks", "all",
                "--max-examples", str(_FUZZ_EXAMPLES[store]), "--seed", "20261128",
                # one worker: hypothesis describes filter lambdas with ast.parse, which
                # CPython 3.11 does not make thread-safe ("AST constructor recursion depth
                # mismatch")
                "--mode", _FUZZ_MODES[store], "--workers", "1",
                # long polls (`wait_ms` up to 10 s) answer after their wait: the default
                # 10 s read timeout cut a 9.999 s notice wait short
                "--request-timeout", "60",
                "--header", f"Authorization: Bearer {_FUZZ_ADMIN}",
                "--phases", "examples,coverage,fuzzing,stateful",
            ],
            capture_output=True, text=True, timeout=540, check=False, cwd=log.parent,
        )
        summary = re.search(r"(\d+) generated, .*", result.stdout)
        print(f"schemathesis on {store}: {summary.group(0) if summary else '?'}")
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert summary is not None, result.stdout[-2000:]
        for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
            assert re.search(rf"✅ +{phase}", result.stdout), (phase, result.stdout[-3000:])
        served_log = log.read_text()
        assert "Traceback" not in served_log and "internal error" not in served_log, \
            served_log[-3000:]
        return int(summary.group(1))

    return run


def _timeline(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_timeline(lines: list[dict[str, Any]], schema: dict[str, Any]) -> None:
    """Every reference-kind record validates; every turn_open has one terminal then close."""
    kinds = set(schema["$defs"])
    validators: dict[str, Draft202012Validator] = {}
    for line in lines:
        kind = line["kind"]
        if kind in kinds:
            v = validators.setdefault(
                kind, Draft202012Validator({**schema, "$ref": f"#/$defs/{kind}"}))
            errors = [e.message for e in v.iter_errors(line["record"])]
            assert not errors, (kind, line["record"], errors)
    per_turn: dict[str, list[str]] = {}
    for line in lines:
        rec = line["record"]
        if line["kind"] == "control_signal" and rec["signal"] in (
                "turn_open", "commit", "abort", "close"):
            per_turn.setdefault(rec["turn_id"], []).append(rec["signal"])
    assert per_turn, "no accepted turn in the timeline"
    for tid, sigs in per_turn.items():
        assert sigs[0] == "turn_open", (tid, sigs)
        assert len(sigs) == 3 and sigs[1] in ("commit", "abort") and sigs[2] == "close", (tid, sigs)


@pytest.fixture(scope="session")
def checked_timeline(reference_schema: dict[str, Any]) -> Callable[[Path], list[dict[str, Any]]]:
    """Reads a JSONL timeline (its lines as dicts) after checking that every reference-kind
    record validates against the wire contract and every turn_open has one terminal then
    close; fails the test otherwise."""
    def read(path: Path) -> list[dict[str, Any]]:
        lines = _timeline(path)
        _check_timeline(lines, reference_schema)
        return lines
    return read


@pytest.fixture
async def fleet_db(pg_url: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for a fleet's control plane (dropped afterwards): the
    scale-out tests (``benchmarks/_fleet.py``)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    from _fleet import create_database, drop_database

    url = await create_database(pg_url)
    try:
        yield url
    finally:
        await drop_database(url, pg_url)
