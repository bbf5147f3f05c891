"""The control plane's OpenAPI document checked by an independent fuzzer (schemathesis 4).

``rspp cp serve`` runs as a real process (SQLite; PostgreSQL when it is reachable);
``st run`` generates requests for every operation from /openapi.json with all checks
(server errors, status code / content type / response schema conformance, missing
auth, negative data rejection, positive data acceptance, undeclared methods ...) in
the examples, coverage, fuzzing and stateful phases (the stateful phase follows the
OpenAPI links publish -> rollout -> route -> token -> verify). Zero failures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import ControlPlaneServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from rspp.cli import main; main()", "cp"]
ST = Path(sys.executable).parent / "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")
ADMIN = "fuzz-admin-key"
#: examples per operation in the fuzzing phase (the coverage phase is exhaustive anyway)
EXAMPLES = {"sqlite": 2, "postgresql": 1}
#: data modes: rejected (negative) data never reaches a store, so on PostgreSQL only the
#: schema-valid data (boundary lengths and ranges that reach its columns) is generated
MODES = {"sqlite": "all", "postgresql": "positive"}



@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest,
           cp_serve: Callable[..., ControlPlaneServer]) -> Iterator[tuple[str, str, Path]]:
    """``rspp cp serve`` on a free port; yields (store, url, its log file)."""
    url, log, _ = cp_serve(request.param, ADMIN)
    yield request.param, url, log


def _seed(url: str) -> None:
    """A healthy runtime with room and one published pipeline, so workflows can succeed."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    runtime = {"runtime_id": "rt-fuzz", "endpoint": "ws://127.0.0.1:9/ws", "capacity": 1_000_000}
    assert httpx.post(f"{url}/v1/runtimes", json=runtime, headers=headers).status_code == 201
    spec = (REPO / "pipelines" / "examples" / "simple_mode.yaml").read_text()
    published = httpx.post(f"{url}/v1/pipelines", json={"spec": spec}, headers=headers)
    assert published.status_code == 201, published.text


def test_schemathesis_all_checks_zero_failures(served: tuple[str, str, Path]) -> None:
    store, url, log = served
    _seed(url)
    result = subprocess.run(
        [
            str(ST), "--config-file", str(CONFIG), "--no-color", "run", f"{url}/openapi.json",
            "--checks", "all", "--max-examples", str(EXAMPLES[store]), "--seed", "20261128",
            # one worker: hypothesis describes filter lambdas with ast.parse, which CPython
            # 3.11 does not make thread-safe ("AST constructor recursion depth mismatch")
            "--mode", MODES[store], "--workers", "1",
            "--header", f"Authorization: Bearer {ADMIN}",
            "--phases", "examples,coverage,fuzzing,stateful",
        ],
        capture_output=True, text=True, timeout=540, check=False, cwd=log.parent,
    )
    summary = re.search(r"(\d+) generated, .*", result.stdout)
    print(f"schemathesis on {store}: {summary.group(0) if summary else '?'}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert summary is not None and int(summary.group(1)) > 500, result.stdout[-2000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ +{phase}", result.stdout), (phase, result.stdout[-3000:])
    served_log = log.read_text()
    assert "Traceback" not in served_log and "internal error" not in served_log, served_log[-3000:]


def test_rspp_cp_openapi_prints_the_served_document() -> None:
    import json

    from rspp.controlplane import openapi_document

    printed = subprocess.run(
        [*CLI, "openapi"], capture_output=True, text=True, timeout=120, check=False
    )
    assert printed.returncode == 0, printed.stderr
    doc = json.loads(printed.stdout)
    assert doc == openapi_document() and doc["openapi"] == "3.1.0"
    route = doc["paths"]["/v1/sessions/route"]["post"]
    assert route["x-rspp-scope"] == "tenant" and route["x-rspp-tenant"] == "body:tenant_id"
    assert route["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RouteRequest"
    }
    assert set(route["responses"]) >= {"201", "400", "401", "403", "409", "413", "422"}
    assert doc["paths"]["/v1/runtimes"]["post"]["x-rspp-scope"] == "fleet"
    assert "links" in doc["paths"]["/v1/pipelines"]["post"]["responses"]["201"]
    tenant_id = doc["components"]["schemas"]["RouteRequest"]["properties"]["tenant_id"]
    assert tenant_id["maxLength"] == 200 and "pattern" in tenant_id
