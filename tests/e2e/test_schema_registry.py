"""The control plane's schema registry, used by the CLI to check a recording offline (F-032).

A real control plane on loopback serves ``GET /v1/schemas[/{schema_version}[/{kind}]]``;
``rspp contracts schema --server`` fetches a version's document, and
``rspp contracts validate --schema`` checks a timeline written by ``rspp run`` with it.
The served schemas are the ones this installation's runtime decodes and validates with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rspp.contracts import SCHEMA_VERSION, all_schemas, reference_schema
from rspp.controlplane import ControlPlaneServer, ControlPlaneSettings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "schema-admin"


def rspp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
                          env=env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlaneServer]:
    db = tmp_path_factory.mktemp("schemas") / "cp.db"
    settings = ControlPlaneSettings(db_url=f"sqlite+aiosqlite:///{db}", admin_key=ADMIN_KEY)
    with ControlPlaneServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The timeline of one spoken question through the offline assistant (``rspp run``, L2:
    enough for ``rspp replay``)."""
    root = tmp_path_factory.mktemp("recorded")
    question = root / "q.wav"
    assert rspp("say", "what is the weather like today", "-o", str(question)).returncode == 0
    timeline = root / "t.jsonl"
    run = rspp("run", str(REPO / "pipelines" / "examples" / "voice_assistant.yaml"),
               "--input", str(question), "--timeline", str(timeline), "--record-level", "L2")
    assert run.returncode == 0, run.stderr
    return timeline


def _fetch(server: ControlPlaneServer, *args: str) -> subprocess.CompletedProcess[str]:
    return rspp("contracts", "schema", *args, "--server", server.url, "--api-key", ADMIN_KEY)


def test_registry_serves_the_runtimes_schemas_by_version(server: ControlPlaneServer) -> None:
    fetched = _fetch(server)  # no --schema-version: the registry's current one
    assert fetched.returncode == 0, fetched.stderr
    doc = json.loads(fetched.stdout)
    assert doc["schema_version"] == SCHEMA_VERSION
    # the documented types are what `rspp contracts schema` prints from this installation,
    # the validation schema is the one every recorded/sent record is validated against
    local = rspp("contracts", "schema")
    assert doc["schema"] == json.loads(local.stdout) == json.loads(json.dumps(all_schemas()))
    assert doc["validation"] == reference_schema()
    record = doc["schema"]["$defs"]["EventRecord"]
    assert record["description"].startswith("A DataLane or TelemetryLane event")
    assert record["properties"]["runtime_sequence"] == {"type": "integer", "minimum": 0}
    assert doc["kinds"]["control_signal"] == {"schema": "#/$defs/ControlSignal",
                                              "validation": "#/$defs/control_signal"}

    one = _fetch(server, "control_signal", "--schema-version", SCHEMA_VERSION)
    assert one.returncode == 0, one.stderr
    kind_doc = json.loads(one.stdout)
    assert list(kind_doc["kinds"]) == ["control_signal"]
    assert kind_doc["validation"]["$ref"] == "#/$defs/control_signal"
    assert kind_doc["schema"]["title"] == "control_signal"

    unknown = _fetch(server, "--schema-version", "v9.0")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"error: not_found: schema_version 'v9.0' is not in the registry; it holds "
        f"{SCHEMA_VERSION} (field: schema_version)")
    bad = httpx.get(f"{server.url}/v1/schemas/latest", headers={"Authorization":
                                                                 f"Bearer {ADMIN_KEY}"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "schema_version"


def test_a_recording_is_validated_offline_with_the_fetched_schema(
    server: ControlPlaneServer, recorded: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "schema.json"
    saved.write_text(_fetch(server, "--schema-version", SCHEMA_VERSION).stdout)
    good = rspp("contracts", "validate", "--schema", str(saved), str(recorded))
    assert (good.returncode, good.stdout.strip()) == (0, f"{recorded}: valid"), good.stderr

    lines = recorded.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"kind":"control_signal"' in
                 line.replace(" ", ""))
    broken = json.loads(lines[index])
    del broken["record"]["emitted_by"]
    other_major = json.loads(lines[index])
    other_major["record"]["schema_version"] = "v2.0"
    for name, line in (("broken", broken), ("v2", other_major)):
        (tmp_path / f"{name}.jsonl").write_text(
            "\n".join([*lines[:index], json.dumps(line), *lines[index + 1:]]) + "\n")
    bad = rspp("contracts", "validate", "--schema", str(saved), str(tmp_path / "broken.jsonl"))
    assert bad.returncode == 1
    assert bad.stdout.startswith(f"{tmp_path / 'broken.jsonl'}:{index + 1}: invalid: "
                                 "record.emitted_by:")
    # this installation's validator gives the same verdict: the tools and the runtime agree
    same = rspp("contracts", "validate", str(tmp_path / "broken.jsonl"))
    assert same.returncode == 1 and same.stdout == bad.stdout
    newer = rspp("contracts", "validate", "--schema", str(saved), str(tmp_path / "v2.jsonl"))
    assert newer.returncode == 1
    assert newer.stdout.strip() == (
        f"{tmp_path / 'v2.jsonl'}:{index + 1}: invalid: record.schema_version: 'v2.0' is "
        f"another major than schema {SCHEMA_VERSION}; fetch GET /v1/schemas/v2.0 and validate "
        "with that")
    not_a_document = rspp("contracts", "validate", "--schema", str(recorded), str(recorded))
    assert not_a_document.returncode == 2
    assert "not a schema registry document" in not_a_document.stderr


def _rewrite(recorded: Path, out: Path, version: str, only_line: int | None = None) -> list[str]:
    """``recorded`` with the schema_version of every record (or of one line) set to
    ``version``; returns the original lines."""
    lines = recorded.read_text().splitlines()
    rewritten = []
    for number, line in enumerate(lines, start=1):
        entry = json.loads(line)
        if "schema_version" in entry["record"] and only_line in (None, number):
            entry["record"]["schema_version"] = version
        rewritten.append(json.dumps(entry))
    out.write_text("\n".join(rewritten) + "\n")
    return lines


def test_recorded_schema_version_decides_what_replay_and_tools_accept(
    recorded: Path, tmp_path: Path
) -> None:
    """F-021: records carry schema_version; a newer minor replays, another major is refused
    by `rspp replay` and `rspp contracts validate` naming the line, field and the fix."""
    lines = recorded.read_text().splitlines()
    versions = {json.loads(line)["record"].get("schema_version") for line in lines}
    assert versions <= {SCHEMA_VERSION, None}
    envelopes = [line for line in lines
                 if json.loads(line)["kind"] in ("event_record", "control_signal")]
    assert len(envelopes) > 100  # every event and control signal of the session
    assert {json.loads(line)["record"]["schema_version"] for line in envelopes} == {
        SCHEMA_VERSION}
    major = SCHEMA_VERSION.split(".")[0]
    minor = tmp_path / "minor.jsonl"
    _rewrite(recorded, minor, f"{major}.9")
    replayed = rspp("replay", str(minor))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    number = next(i for i, line in enumerate(lines, start=1)
                  if json.loads(line)["kind"] == "control_signal")
    other = tmp_path / "other.jsonl"
    _rewrite(recorded, other, "v2.0", only_line=number)
    refused = rspp("replay", str(other))
    assert refused.returncode != 0
    message = (f"schema_version 'v2.0' is incompatible with this runtime's {SCHEMA_VERSION!r} "
               f"(major 2 != {major[1:]}); decode it with an rspp release for v2.x or convert "
               "the recording")
    assert message in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    checked = rspp("contracts", "validate", str(other))
    assert checked.returncode == 1
    assert checked.stdout.strip() == f"{other}:{number}: invalid: record.schema_version: {message}"
