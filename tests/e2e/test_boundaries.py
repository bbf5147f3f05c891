"""The product's boundaries (NF-019..NF-022, docs/boundaries.md), shown through the product.

- NF-020/NF-022: agent logic (a tool call, memory across turns) and a business
  integration (a CRM over HTTP) live in an application node of a spec that ``rspp run``
  runs; the runtime ships no agent, CRM, ticketing or payment abstractions.
- NF-021: the runtime guarantees turn semantics, not model quality: a deliberately wrong
  model answer is delivered as it came, and the recorded turn still passes the
  lifecycle and evidence gates (``rspp slo report``).
- NF-019: transports are adapters: the installed distribution declares no SFU, TURN or
  STUN server; WebRTC and LiveKit are optional extras pointing at external endpoints.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import threading
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

import rspp
from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeProviderServers

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

#: an application node: a CRM lookup (tool call over HTTP) with a memory of earlier turns
AGENT = textwrap.dedent('''
    import httpx

    from rspp import Event, Node, param
    from rspp.nodes import eos_event

    class CrmAgent(Node):
        """Looks the caller up in the CRM and remembers what was asked before."""
        inputs = ("text",)
        outputs = ("text",)
        port_types = {"text": "text"}
        scope = "session"
        parameters = (param("crm_url", "str", "", "the CRM's base URL"),)

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.memory = []
            self.calling = False

        def working(self) -> bool:  # a file run's logical time waits for the tool call
            return self.calling

        async def process(self, event: Event, port: str) -> Event | None:
            question = str(event.payload or "").strip()
            if event.kind != "text" or not event.final or not question:
                return None
            self.calling = True
            try:
                async with httpx.AsyncClient() as http:  # the tool call
                    found = (await http.get(self.params["crm_url"] + "/customers", params={
                        "q": question, "turn": len(self.memory) + 1})).json()
            finally:
                self.calling = False
            earlier = f" Earlier you asked: {self.memory[-1]}." if self.memory else ""
            self.memory.append(question)
            reply = (f"Case {found['case']} for {found['name']}, turn {len(self.memory)}."
                     + earlier)
            self.ctx.emit(event.derive("text", reply, final=True), "text")
            return eos_event(event)  # the reply is complete: the turn may commit
''')

#: the tool call is real I/O: the agent's time limit must cover it on a loaded machine
AGENT_SPEC = voice_assistant_spec(
    "crm-agent", reply=False, providers="  stt: {primary: deepgram}\n  tts: {primary: espeak}",
    nodes=['{id: agent, type: "python:agent_nodes:CrmAgent", timeout_ms: 600000,\n'
           '     params: {crm_url: "%s"}}', "{id: tts, type: tts}"],
    edges=["{from: stt.final, to: agent.text}", "{from: agent.text, to: tts.text}",
           "{from: tts.audio, to: output.audio}"])

#: speech in (fake Deepgram) -> an OpenAI-compatible model (fake) -> speech out
MODEL_SPEC = voice_assistant_spec("wrong-model", providers="""\
  stt: {primary: deepgram}
  llm: {primary: openai, config: {model: fake}}
  tts: {primary: espeak}""")


def _rspp(*args: str, cwd: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full.update(env or {})
    full["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=180, check=False, cwd=cwd,
                          env=full)


@contextmanager
def _fake_crm() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """A CRM's customer lookup on loopback: (base URL, the queries it answered)."""
    queries: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path != "/customers":
                self.send_error(404)
                return
            queries.append(parse_qs(url.query))
            body = json.dumps({"case": "C-17", "name": "Ada Lovelace"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", queries
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _twice(question: Path, out: Path) -> Path:
    """The question, 7 s of silence (the reply plays), the question again: two turns."""
    with wave.open(str(question), "rb") as w:
        params, frames = w.getparams(), w.readframes(w.getnframes())
    silence = b"\0" * (params.sampwidth * params.nchannels * int(params.framerate * 7))
    with wave.open(str(out), "wb") as w:
        w.setparams(params)
        w.writeframes(frames + silence + frames + silence)
    return out


def test_agent_tool_call_memory_and_crm_integration_live_in_an_application_node(
        spoken: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "agent_nodes.py").write_text(AGENT)
    wav = _twice(spoken["question"], tmp_path / "twice.wav")
    with _fake_crm() as (crm, queries), FakeProviderServers() as fakes:
        spec = tmp_path / "agent.yaml"
        spec.write_text(AGENT_SPEC % crm)
        res = _rspp("run", str(spec), "--input", str(wav), "--json", cwd=tmp_path,
                    env=fakes.env)
    assert res.returncode == 0, res.stderr
    turns = json.loads(res.stdout)["turns"]
    assert [t["terminal"] for t in turns] == ["commit", "commit"], turns
    # the tool was called once per turn, with the caller's words; the node remembers turn 1
    asked = "what is the weather like today"
    assert queries == [{"q": [asked], "turn": ["1"]}, {"q": [asked], "turn": ["2"]}]
    assert turns[0]["reply"] == "Case C-17 for Ada Lovelace, turn 1."
    assert turns[1]["reply"] == f"Case C-17 for Ada Lovelace, turn 2. Earlier you asked: {asked}."


def test_the_runtime_ships_no_agent_or_business_system_abstractions() -> None:
    from rspp.nodes import BUILTIN_NODES

    business = re.compile(r"crm|ticket|payment|salesforce|zendesk|stripe|hubspot|agent|memory|"
                          r"tool", re.IGNORECASE)
    types = [cls.resolved_type_name() for cls in BUILTIN_NODES]
    assert types and not [t for t in types if business.search(t)], types
    assert not [n for n in rspp.__all__ if business.search(n)], rspp.__all__
    requires = importlib.metadata.requires("rspp") or []
    assert not [r for r in requires if business.search(r.split(";")[0])], requires


def test_a_wrong_model_answer_is_delivered_and_the_turn_keeps_its_guarantees(
        spoken: dict[str, Path], tmp_path: Path) -> None:
    wrong = "The weather today is purple, and two plus two is five."
    with FakeProviderServers(reply=lambda _: wrong) as fakes:
        spec = tmp_path / "model.yaml"
        spec.write_text(MODEL_SPEC)
        timeline = tmp_path / "t.jsonl"
        res = _rspp("run", str(spec), "--input", str(spoken["question"]), "--json",
                    "--timeline", str(timeline), cwd=tmp_path, env=fakes.env)
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    # the runtime neither checks nor repairs what the model said: it plays it, on time
    assert turn["terminal"] == "commit" and turn["reply"] == wrong, turn
    report = _rspp("slo", "report", str(timeline), "--json", cwd=tmp_path)
    gates = {g["gate"]: g for g in json.loads(report.stdout)["gates"]}
    assert gates[5]["status"] == "pass" and gates[6]["status"] == "pass", gates
    assert gates[4]["status"] == "pass"  # no stale-epoch output


def test_transports_are_adapters_the_distribution_runs_no_sfu_turn_or_stun_server() -> None:
    """Every module of the installed package is read: none serves UDP (the transport of
    SFU, TURN and STUN servers) or imports a TURN/SFU server; WebRTC and LiveKit come only
    with their extras and connect to endpoints the deployment names."""
    server_apis = re.compile(r"create_datagram_endpoint|DatagramProtocol|SOCK_DGRAM|"
                             r"TurnServer|turn_server|stun_server|\bsfu\b", re.IGNORECASE)
    offenders = []
    modules = 0
    for info in pkgutil.walk_packages(rspp.__path__, "rspp."):
        spec = info.module_finder.find_spec(info.name, None)  # type: ignore[call-arg]
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.endswith(".py"):
            continue
        modules += 1
        source = Path(origin).read_text(encoding="utf-8")
        offenders += [f"{info.name}: {m.group(0)}" for m in server_apis.finditer(source)]
    assert modules > 100 and not offenders, offenders
    scripts = [e.name for e in importlib.metadata.entry_points(group="console_scripts")
               if e.value.startswith("rspp")]
    assert scripts == ["rspp"]
    requires = importlib.metadata.requires("rspp") or []
    for sdk in ("aiortc", "livekit"):
        needs = [r for r in requires if r.startswith(sdk)]
        assert needs and all("extra ==" in r for r in needs), (sdk, needs)
