"""F-166 / NF-031: back up the control plane, lose it, restore it with the runbook's commands,
and rehearse the recovery with `rspp cp drill` (RTO and RPO measured against objectives).

Everything runs through the product: `rspp cp serve` processes on SQLite and on
PostgreSQL, the `rspp cp` client commands, and `rspp cp backup | restore | drill`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
ADMIN = "dr-admin-key"
#: the registered runtime never heartbeats: it stays healthy for the whole test
QUIET = ("--heartbeat-timeout-ms", "3600000")


def cp(*args: str, key: str | None = None, server: str | None = None,
       ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSPP_")}
    if key is not None:
        env["RSPP_API_KEY"] = key
    if server is not None:
        env["RSPP_SERVER"] = server
    return subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "cp", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def db_args(server: ControlPlaneServer) -> list[str]:
    """The --db (and --db-schema) a `rspp cp serve` process was started with."""
    args = [str(a) for a in server.proc.args]  # type: ignore[union-attr]
    out: list[str] = []
    for flag in ("--db", "--db-schema"):
        if flag in args:
            out += [flag, args[len(args) - 1 - args[::-1].index(flag) + 1]]
    return out


@pytest.fixture
def new_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], list[str]]]:
    """``new_db(store)``: the --db arguments of an empty database (a new SQLite file or a
    new PostgreSQL schema, dropped at teardown)."""
    schemas: list[tuple[Callable[[str], None], str]] = []

    def make(store: str) -> list[str]:
        if store == "sqlite":
            return ["--db", str(tmp_path / f"restored-{secrets.token_hex(4)}.db")]
        schema = "dr_" + secrets.token_hex(6)
        statement = request.getfixturevalue("pg_statement")
        statement(f"CREATE SCHEMA {schema}")
        schemas.append((statement, schema))
        pg_url = request.getfixturevalue("pg_url")
        return ["--db", pg_url.replace("+asyncpg", ""), "--db-schema", schema]

    yield make
    for statement, schema in schemas:  # (fixtures cannot be looked up at teardown)
        statement(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def lose(server: ControlPlaneServer, request: pytest.FixtureRequest) -> None:
    """The disaster: stop the control plane and destroy its database."""
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=60)
    args = db_args(server)
    if "--db-schema" in args:
        statement = request.getfixturevalue("pg_statement")
        statement(f"DROP SCHEMA {args[3]} CASCADE")
        statement(f"CREATE SCHEMA {args[3]}")  # the fixture's teardown drops it
    else:
        Path(args[1].removeprefix("sqlite:///")).unlink()


def populate(url: str, tmp_path: Path) -> str:
    """Keys, two versions with a canary, a tenant policy and a runtime; the operator key."""
    operator = cp("keys", "create", "--role", "operator", key=ADMIN, server=url)
    assert operator.returncode == 0, operator.stderr
    key = operator.stdout.strip().splitlines()[-1]
    assert cp("publish", str(VOICE), key=key, server=url).returncode == 0
    v2 = tmp_path / "v2.yaml"
    v2.write_text(VOICE.read_text().replace("version: 1.0.0", "version: 2.0.0"))
    assert cp("publish", str(v2), key=key, server=url).returncode == 0
    ok(cp("rollout", "voice-assistant", "--canary", "2.0.0", "--percent", "100",
          "--tenants", "acme", key=key, server=url))
    policy = tmp_path / "policy.yaml"
    for budget in (9000, 7000):  # policy v1, then v2 active
        policy.write_text("kind: policy\nscope: acme\nbody:\n  providers: {stt: pocketsphinx}\n"
                          f"  turn_budget_ms: {budget}\n")
        ok(cp("config", "publish", str(policy), key=ADMIN, server=url))
    ok(cp("runtime", "register", "rt-a", "--endpoint", "ws://127.0.0.1:9/ws", key=key,
          server=url))
    return key


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_restore_from_backup_resumes_admission_with_the_same_versions(
    store: str, cp_serve: Callable[..., ControlPlaneServer], new_db: Callable[[str], list[str]],
    request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    source = cp_serve(store, ADMIN, *QUIET)
    operator = populate(source.url, tmp_path)
    before = ok(cp("route", "--tenant", "acme", "--session", "s-before", key=operator,
                   server=source.url))
    assert (before["pipeline_version"], before["policy_version"]) == ("2.0.0", 2)
    other = ok(cp("route", "--tenant", "globex", key=operator, server=source.url))
    assert other["pipeline_version"] == "1.0.0"  # the canary is acme's only

    # 1. back up while serving
    backup = tmp_path / "cp-backup.json"
    taken = ok(cp("backup", "--out", str(backup), *db_args(source)))
    assert taken["rows"]["cp_pipelines"] == 2 and taken["rows"]["cp_configs"] == 2
    assert taken["rows"]["cp_api_keys"] == 1 and taken["rows"]["cp_rollouts"] == 1
    # 2. the disaster: the control plane and its database are gone
    lose(source, request)
    # a damaged backup is refused before anything is written
    damaged = tmp_path / "damaged.json"
    damaged.write_text(backup.read_text().replace("2.0.0", "2.0.1", 1))
    refused = cp("restore", "--from", str(damaged), *new_db(store))
    assert refused.returncode == 1 and "damaged" in refused.stderr

    # 3. the runbook: restore into a new database, serve it
    target = new_db(store)
    restored = ok(cp("restore", "--from", str(backup), *target))
    assert restored["rows"]["cp_pipelines"] == 2
    again = cp("restore", "--from", str(backup), *target)  # never over live artifacts
    assert again.returncode == 1 and "already holds" in again.stderr
    back = cp_serve(store, ADMIN, *QUIET, *target)
    # 4. admission resumes: the old operator key works, the runtime re-registers, and new
    # sessions get the rollout's version and the tenant's active policy version
    ok(cp("runtime", "register", "rt-a", "--endpoint", "ws://127.0.0.1:9/ws", key=operator,
          server=back.url))
    after = ok(cp("route", "--tenant", "acme", "--session", "s-after", key=operator,
                  server=back.url))
    assert (after["pipeline_version"], after["policy_version"]) == ("2.0.0", 2)
    assert after["admission"]["outcome_kind"] == "admit"
    assert ok(cp("route", "--tenant", "globex", key=operator,
                 server=back.url))["pipeline_version"] == "1.0.0"
    verified = cp("audit", "--verify", key=ADMIN, server=back.url)
    assert verified.returncode == 0, verified.stderr
    audit = cp("audit", key=ADMIN, server=back.url)
    assert "controlplane.restore" in audit.stdout and "rollout.canary" in audit.stdout


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_drill_measures_rto_and_rpo_against_the_objectives(
    store: str, cp_serve: Callable[..., ControlPlaneServer], new_db: Callable[[str], list[str]],
    tmp_path: Path,
) -> None:
    source = cp_serve(store, ADMIN, *QUIET)
    operator = populate(source.url, tmp_path)
    scheduled = tmp_path / "scheduled.json"
    ok(cp("backup", "--out", str(scheduled), *db_args(source)))

    # nothing changed since the scheduled backup: nothing lost, the objectives hold
    scratch = new_db(store)
    scratch_args = ["--scratch-db", scratch[1], *(["--scratch-schema", scratch[3]]
                                                   if len(scratch) > 2 else [])]
    drill = ok(cp("drill", "--backup", str(scheduled), "--rto-s", "600", "--rpo-s", "0",
                  *db_args(source), *scratch_args))
    assert drill["ok"] and drill["lost_changes"] == 0 and drill["rpo_s"] == 0
    assert drill["audit_chain_ok"] and drill["admission_resumed"] and drill["rto_met"]
    assert 0 < drill["rto_s"] <= 600
    acme = [p for p in drill["probes"] if p["tenant_id"] == "acme"]
    assert [(p["pipeline_version"], p["policy_version"], p["source_pipeline_version"],
             p["source_policy_version"]) for p in acme] == [("2.0.0", 2, "2.0.0", 2)]

    # a change after the backup: the drill finds it lost and the RPO objective of 0 missed
    ok(cp("rollback", "voice-assistant", "--to", "1.0.0", key=operator, server=source.url))
    scratch = new_db(store)
    scratch_args = ["--scratch-db", scratch[1], *(["--scratch-schema", scratch[3]]
                                                   if len(scratch) > 2 else [])]
    missed = cp("drill", "--backup", str(scheduled), "--rpo-s", "0", *db_args(source),
                *scratch_args)
    assert missed.returncode == 1 and "rpo" in missed.stderr
    report = json.loads(missed.stdout)
    assert report["lost_changes"] == 1 and report["rpo_s"] > 0 and not report["rpo_met"]
    acme = [p for p in report["probes"] if p["tenant_id"] == "acme"]
    assert [(p["pipeline_version"], p["source_pipeline_version"]) for p in acme] == [
        ("2.0.0", "1.0.0")]  # the restored rollout predates the rollback: that is the loss
