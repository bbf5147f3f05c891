"""Conformance profiles and certification through ``rspp conformance`` (F-164).

The external-node profile is run against a package by the command a third party would
use; a package that breaks one contract is rejected naming that category; results that
omit a mandatory category are rejected at certification; a profile manifest of one's
own (one category made optional) changes the verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.conformance

CATEGORIES = ["handshake", "call", "concurrent_calls", "cancel", "stop"]


def rspp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=110, check=False, cwd=cwd)


def verdict(stdout: str) -> dict[str, str]:
    """Category -> PASS/FAIL/MISSING from the human report."""
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return {r[1]: r[0] for r in rows}


def test_profiles_list_the_mandatory_categories_of_each_target(tmp_path: Path) -> None:
    res = rspp("conformance", "profiles", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    profiles = {p["name"]: p for p in json.loads(res.stdout)["profiles"]}
    assert {p["target"] for p in profiles.values()} == {"transport", "provider",
                                                        "external_node"}
    assert [c["name"] for c in profiles["external-node"]["categories"]] == CATEGORIES
    assert all(c["mandatory"] and c["checks"] for p in profiles.values()
               for c in p["categories"])


def test_an_external_node_package_passes_the_external_node_profile(
    node_package: Callable[..., Path], tmp_path: Path
) -> None:
    manifest = node_package()
    res = rspp("conformance", "check", "external-node", str(manifest), "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    cert = out["certification"]
    assert cert["certified"] and cert["profile"] == "external-node/v1" and not cert["rejected"]
    assert [(r["category"], r["status"]) for r in cert["rows"]] == \
        [(c, "pass") for c in CATEGORIES]
    details = {r["category"]: r["detail"] for r in out["results"]["results"]}
    assert details["call"] == "call 1: 1 emit(s), then done"
    assert details["stop"] == "exited 0 after stop"


@pytest.mark.parametrize(("broken", "failing", "why"), [
    ("stop", "stop", "still runs 5 s after `stop`"),
    ("cancel", "cancel", "got no `done` within 5 s"),
    ("stdout", "handshake", "the child sent a frame of"),
])
def test_a_package_that_breaks_a_contract_is_rejected_naming_it(
    node_package: Callable[..., Path], tmp_path: Path, broken: str, failing: str, why: str
) -> None:
    """A deliberately broken adapter: the report names the failing category and the run
    exits 1; the categories it honours still pass."""
    res = rspp("conformance", "check", "external-node", str(node_package(broken)),
               cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    rows = verdict(res.stdout)
    assert rows[failing] == "FAIL", res.stdout
    fail_line = next(x for x in res.stdout.splitlines() if f" {failing} (" in x)
    assert why in fail_line, fail_line
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith(f"REJECTED: mandatory category {failing} fail"), last
    if broken != "stdout":  # a program that cannot even start fails everything
        assert {c: s for c, s in rows.items() if c != failing} == \
            {c: "PASS" for c in CATEGORIES if c != failing}, res.stdout


def test_results_missing_a_mandatory_category_are_rejected_at_certification(
    node_package: Callable[..., Path], tmp_path: Path
) -> None:
    """Catalog steps 3-4: a run that omits ``cancel`` reports it MISSING and is rejected;
    the saved results are rejected again by ``certify``; a profile manifest that makes
    ``cancel`` optional certifies the same results."""
    saved = tmp_path / "results.json"
    res = rspp("conformance", "check", "external-node", str(node_package()), "--skip",
               "cancel", "--out", str(saved), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert verdict(res.stdout)["cancel"] == "MISSING"
    assert [r["category"] for r in json.loads(saved.read_text())["results"]] == \
        [c for c in CATEGORIES if c != "cancel"]

    cert = rspp("conformance", "certify", str(saved), "--json", cwd=tmp_path)
    assert cert.returncode == 1
    body = json.loads(cert.stdout)["certification"]
    assert body["rejected"] == ["mandatory category cancel missing"]
    assert {r["category"]: r["status"] for r in body["rows"]}["cancel"] == "missing"

    profiles = json.loads(rspp("conformance", "profiles", "--json", cwd=tmp_path).stdout)
    mine: dict[str, Any] = next(p for p in profiles["profiles"] if p["name"] == "external-node")
    mine = {**mine, "name": "lenient-node", "categories": [
        {**c, "mandatory": c["name"] != "cancel"} for c in mine["categories"]]}
    custom = tmp_path / "lenient.json"
    custom.write_text(json.dumps(mine))
    ok = rspp("conformance", "certify", str(saved), "--profile", str(custom), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "MISSING cancel (optional)" in ok.stdout and \
        ok.stdout.strip().endswith("CERTIFIED")


def test_bad_profile_or_results_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "target": "toaster", "categories": []}))
    res = rspp("conformance", "certify", str(bad), "--profile", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "RESULTS" in res.stderr and "unknown field `name`" in res.stderr, res.stderr
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"target": "external_node", "subject": "s",
                                   "profile": "external-node/v1", "results": []}))
    res = rspp("conformance", "certify", str(results), "--profile", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "--profile" in res.stderr and "target" in res.stderr, res.stderr


PROVIDER_CATEGORIES = ["capabilities", "streaming", "cancel", "error_normalisation", "metrics"]


@pytest.fixture(scope="module")
def provider_env() -> Any:
    """The environment of a process whose remote adapters reach fake vendor servers."""
    import os

    from rspp.testing.fakes import FakeProviderServers

    with FakeProviderServers() as servers:
        yield {**os.environ, **servers.env}


@pytest.mark.parametrize(("kind", "adapter"), [
    ("llm", "local-responder"), ("llm", "openai"), ("llm", "anthropic"),
    ("stt", "pocketsphinx"), ("stt", "deepgram"),
    ("tts", "espeak"), ("tts", "elevenlabs"), ("tts", "openai-tts"),
])
def test_every_provider_adapter_passes_the_provider_profile(
    provider_env: dict[str, str], tmp_path: Path, kind: str, adapter: str
) -> None:
    """Each adapter built as a spec builds it (remote ones against their vendor's fake
    server through the base-URL environment) is certified against ``provider``."""
    res = subprocess.run([sys.executable, "-c", "from rspp.cli import main; main()",
                          "conformance", "check", "provider", kind, adapter, "--json"],
                         capture_output=True, text=True, timeout=110, check=False,
                         cwd=tmp_path, env=provider_env)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    cert = out["certification"]
    assert cert["certified"] and cert["profile"] == "provider/v1", cert
    assert [(r["category"], r["status"]) for r in cert["rows"]] == \
        [(c, "pass") for c in PROVIDER_CATEGORIES]
    seen = {r["category"]: r["detail"] for r in out["results"]["results"]}
    assert seen["metrics"] == "3 invocations recorded (cancelled, success, timeout)", seen
