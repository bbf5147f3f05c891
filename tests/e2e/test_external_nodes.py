"""External nodes out of process through ``rspp run`` (F-122, F-123, F-124, F-171, NF-036).

A node package (manifest, program, SBOM, DSSE attestation signed by a key the runtime
trusts through ``RSPP_TRUSTED_NODE_KEYS``) is named in the spec as
``external:PKG/rspp-node.json@sha256:DIGEST``. Its program (written with the
``rspp_external`` child SDK) runs in a child process per session; what it emits leaves
the node's ports. The program's behaviour is chosen by the spec's ``config``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rspp.nodes.external import attest, load_manifest, sha256_file
from rspp.testing import voice_assistant_spec
from rspp.testing.fakes import FakeProviderServers

pytestmark = pytest.mark.e2e

PROGRAM = textwrap.dedent('''
    import asyncio, os, socket, time
    from rspp_external import run

    CONFIG = {}

    def probe():
        seen = []
        try:
            open(CONFIG["secret"]).read()
            seen.append("read:ok")
        except OSError:
            seen.append("read:denied")
        try:
            with open(CONFIG["scratch"], "w") as f:
                f.write("x")
            seen.append("write:ok")
        except OSError:
            seen.append("write:denied")
        try:
            socket.create_connection(("127.0.0.1", CONFIG["port"]), timeout=5).close()
            seen.append("net:ok")
        except OSError:
            seen.append("net:denied")
        return " ".join(seen)

    async def handle(event, emit):
        text = str(event.payload or "")
        if event.kind != "text" or not text.strip():
            emit(event.payload)
            return
        mode = CONFIG.get("mode", "shout")
        if CONFIG.get("trigger", "") not in text.lower():
            mode = "shout"
        if mode == "wait":          # cooperative: ends only when the runtime cancels it
            await asyncio.Event().wait()
        if mode == "stuck":         # blocks the whole program: it cannot hear a cancel
            time.sleep(3600)
        if mode == "crash":
            os._exit(3)
        if mode == "burn":          # spins on the CPU until its cpu_seconds limit ends it
            while True:
                pass
        if mode == "hog":           # allocates past its memory_mb limit
            hog = bytearray(CONFIG["hog_mb"] << 20)
            emit(str(len(hog)))
            return
        if mode == "probe":
            emit(probe())
            return
        if mode == "hold":
            await asyncio.sleep(CONFIG["hold_s"])
        emit(text.upper().rstrip(".!?") + CONFIG.get("suffix", "!"))

    run(handle, CONFIG)
''')

SBOM = {"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [{"type": "library", "name": "msgspec", "version": "0.18"}]}

def spec_text(nodes: str, edges: str, tts_from: str = "loud") -> str:
    """The voice assistant on the Deepgram (fake) STT, which keeps the runs light, with the
    external ``nodes`` and ``edges`` (YAML list items) added; the TTS speaks the text of the
    node ``tts_from``."""
    return voice_assistant_spec(
        "external-nodes", head="budgets: {turn_ms: 120000, path_ms: 120000, "
                               "provider_timeout_ms: 60000}",
        stt="{primary: deepgram}", tts_from=tts_from, nodes=[nodes.removeprefix("- ")],
        edges=[edges.removeprefix("- ")])


#: the external node between the segmenter and the TTS (with ``tts_from`` "loud")
LOUD_EDGES = "- {from: segmenter.text, to: loud.text}"


class Keys:
    def __init__(self, tmp: Path) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.public_pem = tmp / "trusted.pem"
        self.public_pem.write_bytes(self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def make_package(root: Path, keys: Keys, *, sbom: bool = True, attested: bool = True,
                 signer: Ed25519PrivateKey | None = None) -> str:
    """Write a package under ``root``; return its pinned type string."""
    root.mkdir(parents=True)
    (root / "loud.py").write_text(PROGRAM)
    manifest: dict[str, Any] = {"name": "loud", "version": "1.0.0",
                                "command": ["{python}", "loud.py"], "artifact": "loud.py",
                                "inputs": {"text": "text"}, "outputs": {"text": "text"}}
    if sbom:
        (root / "sbom.cdx.json").write_text(json.dumps(SBOM))
        manifest["sbom"] = "sbom.cdx.json"
    if attested:
        manifest["attestation"] = "loud.intoto.json"
    (root / "rspp-node.json").write_text(json.dumps(manifest))
    if attested and sbom:
        envelope = attest(load_manifest(root / "rspp-node.json"), root,
                          signer or keys.private)
        (root / "loud.intoto.json").write_text(json.dumps(envelope))
    return f"external:{root.name}/rspp-node.json@sha256:{sha256_file(root / 'loud.py')}"


def node_line(node_id: str, type_ref: str, params: dict[str, Any], extra: str = "") -> str:
    """The node budget (``timeout_ms``, media time in a file run) is raised so only the
    external node's own limits (``call_timeout_ms``, real time) end its calls."""
    return (f"- {{id: {node_id}, type: \"{type_ref}\", params: {json.dumps(params)}, "
            f"timeout_ms: 600000{extra}}}")


def rspp(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    full.update(env)
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=240, check=False, cwd=cwd,
                          env=full)


def lines(timeline: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in timeline.read_text().splitlines()]


def records(timeline: Path) -> list[dict[str, Any]]:
    return [x["record"] for x in lines(timeline)]


def audits(recs: list[dict[str, Any]], prefix: str) -> list[str]:
    return [str(r["reason"]) for r in recs if r.get("lane") == "TelemetryLane"
            and str(r.get("reason", "")).startswith(prefix)]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def fakes() -> Any:
    with FakeProviderServers() as servers:
        yield servers


def run_spec(tmp: Path, name: str, nodes: str, edges: str, question: Path, keys: Keys,
             fakes: Any, *extra: str, tts_from: str = "loud"
             ) -> tuple[subprocess.CompletedProcess[str], Path]:
    spec, tl = tmp / f"{name}.yaml", tmp / f"{name}.jsonl"
    spec.write_text(spec_text(nodes, edges, tts_from))
    env = {**fakes.env, "RSPP_TRUSTED_NODE_KEYS": str(keys.public_pem)}
    res = rspp("run", str(spec), "--input", str(question), "--timeline", str(tl), "--json",
               *extra, cwd=tmp, env=env)
    return res, tl


def test_an_external_node_answers_over_the_boundary(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-122: the reply sentences go to the child and come back upper-cased."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = node_line("loud", ref, {"config": {"suffix": " (out of process)"}})
    res, tl = run_spec(tmp_path, "shout", nodes, LOUD_EDGES, spoken["question"], keys, fakes,
                       "--metrics-events")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit", turn
    assert turn["reply"].startswith("I CANNOT CHECK THE WEATHER OFFLINE"), turn
    assert turn["reply"].endswith(" (out of process)"), turn
    recs = records(tl)
    (start,) = audits(recs, "external_start:")
    assert start.startswith(f"external_start:loud@{ref[-64:][:12]}:sandbox=0:"), start
    # the overhead of the boundary is observable per node (F-124 step 4): in-band metrics
    seen = [x["payload"] for x in lines(tl) if x["record"].get("reason") == "node_metric"
            and x["record"].get("node_id") == "loud"]
    names = [p["name"] for p in seen]
    assert names.count("external_start_seconds") == 1 and \
        names.count("external_call_seconds") >= 2, seen
    assert all(0 < p["value"] < 60 for p in seen), seen


def test_a_hung_external_node_times_out_is_killed_and_the_fallback_carries_the_turn(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-122/F-123: call_timeout_ms is the node's own limit; a child that cannot hear the
    cancel is killed after cancel_grace_ms; the error is provider_timeout (taxonomy) and the
    spec's fallback node carries the event, so the turn still commits whole."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = (node_line("loud", ref, {"config": {"mode": "stuck"}, "call_timeout_ms": 800,
                                     "cancel_grace_ms": 200, "max_restarts": 0},
                       ", fallback: {node: plain, on: [timeout, error]}")
             + "\n  - {id: plain, type: passthrough}")
    edges = LOUD_EDGES + "\n  - {from: plain.out, to: tts.text}"
    res, tl = run_spec(tmp_path, "stuck", nodes, edges, spoken["question"], keys, fakes)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (turn,) = out["turns"]
    assert turn["terminal"] == "commit", turn
    assert turn["reply"].startswith("I cannot check the weather"), turn  # through the fallback
    recs = records(tl)
    errors = [r["reason"] for r in recs if r.get("lane") == "TelemetryLane"
              and ":error:" in r["event_id"] and r.get("node_id") == "loud"]
    # the first sentence timed out in the child; the killed child is not restarted
    # (max_restarts 0), so the later events fail at once as runtime errors
    assert errors[0] == "provider_timeout", errors
    assert set(errors[1:]) <= {"runtime_internal_error"}, errors
    assert audits(recs, "external_killed:") == ["external_killed:loud:call_timeout"]
    fallbacks = [r["reason"] for r in recs if r.get("signal") == "fallback"]
    assert fallbacks[0] == "provider_timeout:loud->plain" and len(fallbacks) == len(errors)
    assert not out["dead_letters"]


def test_a_crashing_external_node_is_a_dead_letter_with_its_exit_status(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = node_line("loud", ref, {"config": {"mode": "crash"}, "max_restarts": 0})
    res, _tl = run_spec(tmp_path, "crash", nodes, LOUD_EDGES, spoken["question"], keys, fakes)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # the sentence killed the child: a runtime error of the node (its exit status quoted),
    # a dead letter (no fallback), and the turn ends on the error
    (first,) = out["dead_letters"]
    assert first.startswith("loud:runtime_internal_error:") and "exited with code 3" in first
    (turn,) = out["turns"]
    assert turn["terminal"] == "abort", turn


def test_a_turn_cancel_reaches_the_external_node(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-122 step 4: a user cancel of the reply is forwarded to the child, which acknowledges."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = node_line("notes", ref, {"config": {"mode": "wait"}, "call_timeout_ms": 600000})
    edges = "- {from: stt.final, to: notes.text}\n  - {from: notes.text, to: output.notes}"
    res, tl = run_spec(tmp_path, "cancel", nodes, edges, spoken["question"], keys, fakes,
                       "--cancel-after", "0.3", "--real-time", tts_from="segmenter")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert (turn["terminal"], turn["reason"]) == ("abort", "cancelled"), turn
    recs = records(tl)
    cancels = {r["node_id"]: r["reason"] for r in recs if r.get("signal") == "cancel"
               and r.get("scope") == "node"}
    assert cancels["notes"] == "user_cancel:soft"
    assert audits(recs, "external_cancel_ack:") == ["external_cancel_ack:loud:call=1"]


def test_sandbox_mode_denies_files_and_network_the_plain_mode_allows(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-124: the same program probes a file outside its package, a file write and a TCP
    connection to a listening socket; unsandboxed all succeed, sandboxed all are denied."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    replies = {}
    try:
        for sandbox in (False, True):
            scratch = tmp_path / f"scratch-{sandbox}.txt"
            config = {"mode": "probe", "secret": str(secret), "scratch": str(scratch),
                      "port": port}
            nodes = node_line("loud", ref, {"config": config, "sandbox": sandbox})
            res, tl = run_spec(tmp_path, f"probe-{sandbox}", nodes, LOUD_EDGES,
                               spoken["question"], keys, fakes)
            assert res.returncode == 0, res.stderr
            (turn,) = json.loads(res.stdout)["turns"]
            replies[sandbox] = (turn["reply"], scratch.exists(), audits(records(tl),
                                                                        "external_start:"))
    finally:
        listener.close()
    reply, wrote, (start,) = replies[False]
    assert reply.startswith("read:ok write:ok net:ok") and wrote, replies
    assert ":sandbox=0:" in start
    reply, wrote, (start,) = replies[True]
    assert reply.startswith("read:denied write:denied net:denied") and not wrote, replies
    assert ":sandbox=1:netns=1:landlock=" in start and ":landlock=0:" not in start, start


def test_concurrency_limit_queues_then_rejects_calls_of_one_external_type(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-123: three nodes of one package get the final transcript at once; the type allows
    one call at a time and one waiting: one runs, one waits its turn, one is rejected."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    params = {"config": {"mode": "hold", "hold_s": 0.5, "suffix": ""}, "max_concurrency": 1,
              "max_queue": 1, "queue_timeout_ms": 60000, "call_timeout_ms": 60000}
    fallback = ", fallback: {node: plain, on: [error]}"
    nodes = "\n  ".join(node_line(n, ref, params, fallback) for n in ("a", "b", "c"))
    nodes += "\n  - {id: plain, type: passthrough}"
    edges = "\n  ".join(f"- {{from: stt.final, to: {n}.text}}\n  - {{from: {n}.text, to: "
                        "output.notes}" for n in ("a", "b", "c"))
    edges += "\n  - {from: plain.out, to: output.notes}"
    res, tl = run_spec(tmp_path, "limits", nodes, edges, spoken["question"], keys, fakes,
                       tts_from="segmenter")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    recs = records(tl)
    rejected = [r["node_id"] for r in recs if r.get("lane") == "TelemetryLane"
                and ":error:" in r["event_id"] and r.get("reason") == "resource_limit_exceeded"]
    queued = [r["node_id"] for r in recs if str(r.get("reason", "")).startswith(
        "external_queued:")]
    fallbacks = [r["reason"] for r in recs if r.get("signal") == "fallback"]
    assert len(rejected) == 1 and len(queued) == 1 and rejected != queued, (rejected, queued)
    assert fallbacks == [f"resource_limit_exceeded:{rejected[0]}->plain"]
    assert not out["dead_letters"]


def test_onboarding_refuses_a_package_without_sbom_attestation_or_trusted_signature(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-171/NF-036: only the compliant package runs; each other one is refused before any
    audio flows with one line naming the field that failed."""
    good = make_package(tmp_path / "good", keys)
    cases = {
        "no_sbom": (make_package(tmp_path / "no_sbom", keys, sbom=False),
                    "manifest field `sbom` is missing"),
        "no_attestation": (make_package(tmp_path / "no_att", keys, attested=False),
                           "manifest field `attestation` is missing"),
        "untrusted": (make_package(tmp_path / "untrusted", keys,
                                   signer=Ed25519PrivateKey.generate()),
                      "manifest field `attestation`: the signature does not verify"),
        "unpinned": (good.rpartition("@")[0], "not pinned; append @sha256:"),
        "wrong_pin": (good[:-8] + "00000000", "the spec pins"),
    }
    for name, (ref, expected) in cases.items():
        res, tl = run_spec(tmp_path, name, node_line("loud", ref, {}), LOUD_EDGES,
                           spoken["question"], keys, fakes)
        assert res.returncode != 0, (name, res.stdout)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "nodes[5].type" in lines[0] and expected in lines[0], \
            (name, res.stderr)
        assert not tl.exists()
    # an artifact changed after it was pinned and attested is refused too
    tampered = tmp_path / "good" / "loud.py"
    original = tampered.read_text()
    tampered.write_text(original + "\n# patched\n")
    res, _ = run_spec(tmp_path, "tampered", node_line("loud", good, {}), LOUD_EDGES,
                      spoken["question"], keys, fakes)
    assert res.returncode != 0 and "the spec pins" in res.stderr
    tampered.write_text(original)
    res, _ = run_spec(tmp_path, "good", node_line("loud", good, {}), LOUD_EDGES,
                      spoken["question"], keys, fakes)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["turns"][0]["reply"].startswith("I CANNOT CHECK")


def test_node_check_inventories_external_nodes_and_attest_makes_one_compliant(
    tmp_path: Path, keys: Keys
) -> None:
    """NF-036: ``rspp node check`` lists every external-node artifact of a pipeline with
    its compliance (exit 1 on a finding); ``rspp node attest`` signs the missing one."""
    good = make_package(tmp_path / "good", keys)
    unsigned = make_package(tmp_path / "unsigned", keys, attested=False)
    nodes = "\n  ".join([node_line("good_node", good, {}), node_line("unsigned_node", unsigned,
                                                                      {})])
    spec = tmp_path / "inventory.yaml"
    spec.write_text(spec_text(nodes, LOUD_EDGES.replace("loud", "good_node"), "good_node"))
    env = {"RSPP_TRUSTED_NODE_KEYS": str(keys.public_pem)}
    res = rspp("node", "check", str(spec), "--json", cwd=tmp_path, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    rows = {r["node"]: r for r in json.loads(res.stdout)["external_nodes"]}
    assert rows["good_node"]["compliant"] and rows["good_node"]["sbom"] == \
        "CycloneDX (1 components)"
    assert rows["good_node"]["artifact_sha256"] == good.rpartition(":")[2]
    bad = rows["unsigned_node"]
    assert not bad["compliant"] and "manifest field `attestation` is missing" in bad["finding"]
    # the package names its attestation file and is signed with the CLI
    manifest = tmp_path / "unsigned" / "rspp-node.json"
    body = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**body, "attestation": "loud.intoto.json"}))
    key = tmp_path / "signer.pem"
    key.write_bytes(keys.private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    signed = rspp("node", "attest", str(manifest), "--key", str(key), cwd=tmp_path, env=env)
    assert signed.returncode == 0, signed.stderr
    res = rspp("node", "check", str(spec), cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("2 external node(s), 0 non-compliant")


SERVED = textwrap.dedent('''
    name: text-shout
    version: 1.0.0
    profile: simple/v1
    budgets: {turn_ms: 60000, node_ms: 60000, provider_timeout_ms: 20000}
    providers:
      llm: {primary: local}
    nodes:
      - %(node)s
      - {id: llm, type: llm}
    edges:
      - {from: input.text, to: loud.text}
      - {from: loud.text, to: llm.text}
      - {from: llm.text, to: output.text}
''')


SERVE_KEY = "serve-external-admin-key"


def serve_text_shout(serve_process: Any, tmp_path: Path, keys: Keys,
                     params: dict[str, Any]) -> tuple[str, Path]:
    """``rspp serve`` of the text pipeline through an external node with ``params`` (the
    node declares its ports, so the control plane, which runs no node code, can check the
    graph at publish); returns the server URL and the timeline directory."""
    import httpx

    ref = make_package(tmp_path / "loud_pkg", keys)
    node = node_line("loud", ref, params,
                     ", ports: {inputs: [{name: text, type: text}], outputs: [{name: text, "
                     "type: text}], is_async: true}")[2:]
    spec = tmp_path / "served.yaml"
    spec.write_text(SERVED % {"node": node})
    timelines = tmp_path / "timelines"
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", SERVE_KEY, "--timeline-dir", str(timelines),
                        cwd=tmp_path,
                        env={"RSPP_TRUSTED_NODE_KEYS": str(keys.public_pem)}).wait_ready()
    policy = httpx.post(f"{srv.url}/v1/configs/policy/acme", timeout=30,
                        headers={"Authorization": f"Bearer {SERVE_KEY}"},
                        json={"body": {"recording_level": "L1"}})
    assert policy.status_code < 300, policy.text
    return srv.url, timelines


async def connect(url: str) -> Any:
    from rspp.client import LiveClient, route_session

    target = await route_session(url, tenant_id="acme", api_key=SERVE_KEY,
                                 pipeline_name="text-shout")
    return await LiveClient.connect(target.url, token=target.token)


async def text_turn(client: Any, text: str) -> tuple[str, str]:
    """Send ``text``; (the turn's terminal, its final reply text) once the turn closes."""
    from rspp.transports import ReplyText, TurnEvent

    await client.send_text(text)
    reply, state = "", ""
    async for ev in client.events():
        if isinstance(ev, ReplyText) and ev.final:
            reply = ev.text
        if isinstance(ev, TurnEvent) and ev.state in ("commit", "abort"):
            state = ev.state
        if isinstance(ev, TurnEvent) and ev.state == "close":
            return state, reply
    raise AssertionError("the session closed before the turn did")


def test_served_sessions_share_the_concurrency_limit_of_an_external_type(
    serve_process: Any, tmp_path: Path, keys: Keys
) -> None:
    """F-123 across sessions: two ``rspp serve`` sessions call one external type that
    allows one call at a time and no queue; the second session's call, made while the
    first one's is in the child, is rejected (``resource_limit_exceeded``, its turn
    aborts); the first session's turn (its text through the node, then the model) commits.
    The runtime onboards the package when it loads the spec."""
    import asyncio

    url, timelines = serve_text_shout(
        serve_process, tmp_path, keys,
        {"config": {"mode": "hold", "hold_s": 3, "suffix": "!"}, "max_concurrency": 1,
         "max_queue": 0, "call_timeout_ms": 30000})

    async def opened(sid: str) -> None:
        path = timelines / f"{sid}.jsonl"
        while not any(json.loads(x)["record"].get("signal") == "turn_open"  # noqa: ASYNC110
                      for x in (path.read_text().splitlines() if path.exists() else ())):
            await asyncio.sleep(0.05)

    async def scenario() -> tuple[tuple[str, str], tuple[str, str], str, str]:
        a, b = await connect(url), await connect(url)
        async with a, b:
            first = asyncio.create_task(text_turn(a, "hello there"))
            await opened(a.ready.session_id)  # A's call is on its way to the child
            second = await text_turn(b, "hello too")
            return await first, second, a.ready.session_id, b.ready.session_id

    first, second, sid_a, sid_b = asyncio.run(scenario())
    assert first[0] == "commit" and first[1], first  # the model answered A's shouted text
    assert second[0] == "abort", second
    errors_b = [r for r in records(timelines / f"{sid_b}.jsonl")
                if r.get("lane") == "TelemetryLane" and ":error:" in r["event_id"]]
    assert [(r["node_id"], r["reason"]) for r in errors_b] == \
        [("loud", "resource_limit_exceeded")]
    assert not [r for r in records(timelines / f"{sid_a}.jsonl")
                if r.get("lane") == "TelemetryLane" and ":error:" in r["event_id"]]


def test_a_served_session_goes_on_after_its_node_hit_the_cpu_limit(
    serve_process: Any, tmp_path: Path, keys: Keys
) -> None:
    """F-107 through ``rspp serve``: the first turn's text makes the child spin past
    cpu_seconds 1; that turn aborts ``resource_limit_exceeded`` (recorded as a limit
    violation, not a crash); the same session's next turn restarts the child and commits."""
    import asyncio

    url, timelines = serve_text_shout(
        serve_process, tmp_path, keys,
        {"config": {"mode": "burn", "trigger": "spin"}, "cpu_seconds": 1,
         "call_timeout_ms": 120000})

    async def scenario() -> tuple[tuple[str, str], tuple[str, str], str]:
        async with await connect(url) as client:
            burnt = await text_turn(client, "spin the cpu please")
            after = await text_turn(client, "hello again")
            return burnt, after, client.ready.session_id

    burnt, after, sid = asyncio.run(scenario())
    assert burnt[0] == "abort", burnt
    assert after[0] == "commit" and after[1], after
    errors, limits, _ = limit_records(timelines / f"{sid}.jsonl")
    assert errors == ["resource_limit_exceeded"], errors
    assert limits == ["external_limit:loud:cpu_seconds=1"]
    recs = records(timelines / f"{sid}.jsonl")
    assert len(audits(recs, "external_start:")) == 2  # restarted for the second turn
    aborts = [r["reason"] for r in recs if r.get("signal") == "abort"]
    assert aborts == ["resource_limit_exceeded"], aborts


def limit_records(tl: Path) -> tuple[list[str], list[str], list[str]]:
    """(error reasons of node loud, external_limit audits, external_limit_exceeded metrics)."""
    recs = records(tl)
    errors = [str(r["reason"]) for r in recs if r.get("lane") == "TelemetryLane"
              and ":error:" in r["event_id"] and r.get("node_id") == "loud"]
    metrics = [x["record"]["node_id"] for x in lines(tl)
               if x["record"].get("reason") == "node_metric"
               and x["payload"].get("name") == "external_limit_exceeded"]
    return errors, audits(recs, "external_limit:"), metrics


def test_a_child_killed_by_its_cpu_limit_is_a_resource_limit_violation(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-107: the reply's first sentence makes the child spin; RLIMIT_CPU (cpu_seconds 1)
    ends it with SIGXCPU, which the node reports as ``resource_limit_exceeded`` (an error
    record, an ``external_limit`` audit, a metric), not as a crash; without a fallback the
    turn aborts ``resource_limit_exceeded`` (T10) and the run ends normally."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = node_line("loud", ref, {"config": {"mode": "burn", "trigger": "weather"},
                                    "cpu_seconds": 1, "call_timeout_ms": 120000})
    res, tl = run_spec(tmp_path, "burn", nodes, LOUD_EDGES, spoken["question"], keys, fakes,
                       "--metrics-events")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (turn,) = out["turns"]
    assert (turn["terminal"], turn["reason"]) == ("abort", "resource_limit_exceeded"), turn
    first = out["dead_letters"][0]
    assert first.startswith("loud:resource_limit_exceeded:"), out["dead_letters"]
    assert "SIGXCPU: exceeded cpu_seconds=1" in first, first
    errors, limits, metrics = limit_records(tl)
    assert errors[0] == "resource_limit_exceeded" and "runtime_internal_error" not in errors
    assert limits[0] == "external_limit:loud:cpu_seconds=1" and metrics[0] == "loud"
    assert len(limits) == errors.count("resource_limit_exceeded") == len(metrics)
    # the launcher enforced the limit it reports
    (start, *_) = audits(records(tl), "external_start:")
    assert ":cpu_s=1:" in start, start


def test_an_allocation_past_the_memory_limit_is_a_violation_the_fallback_carries(
    spoken: dict[str, Path], tmp_path: Path, keys: Keys, fakes: Any
) -> None:
    """F-107: the child allocates 2 GiB under memory_mb 256 (RLIMIT_AS): the allocation
    fails in the child, which says so (``error`` with ``limit: memory_mb``); the node
    reports ``resource_limit_exceeded``, the spec's fallback carries the sentence and the
    turn commits; the child stays up (it is started once)."""
    ref = make_package(tmp_path / "loud_pkg", keys)
    nodes = (node_line("loud", ref, {"config": {"mode": "hog", "hog_mb": 2048,
                                                "trigger": "weather"}, "memory_mb": 256},
                       ", fallback: {node: plain, on: [error]}")
             + "\n  - {id: plain, type: passthrough}")
    edges = LOUD_EDGES + "\n  - {from: plain.out, to: tts.text}"
    res, tl = run_spec(tmp_path, "hog", nodes, edges, spoken["question"], keys, fakes,
                       "--metrics-events")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (turn,) = out["turns"]
    assert turn["terminal"] == "commit", turn
    assert "cannot check the weather" in turn["reply"], turn  # through the fallback
    assert not out["dead_letters"]
    errors, limits, metrics = limit_records(tl)
    assert errors and set(errors) == {"resource_limit_exceeded"}, errors
    assert limits == ["external_limit:loud:memory_mb=256"] * len(errors) and \
        len(metrics) == len(errors)
    recs = records(tl)
    fallbacks = [r["reason"] for r in recs if r.get("signal") == "fallback"]
    assert fallbacks == ["resource_limit_exceeded:loud->plain"] * len(errors), fallbacks
    assert len(audits(recs, "external_start:")) == 1
