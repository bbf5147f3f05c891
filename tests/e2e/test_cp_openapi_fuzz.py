"""The control plane's OpenAPI document checked by an independent fuzzer (schemathesis 4).

``rspp cp serve`` runs as a real process (SQLite; PostgreSQL when it is reachable);
``st run`` generates requests for every operation from /openapi.json with all checks
(server errors, status code / content type / response schema conformance, missing
auth, negative data rejection, positive data acceptance, undeclared methods ...) in
the examples, coverage, fuzzing and stateful phases (the stateful phase follows the
OpenAPI links publish -> rollout -> route -> token -> verify). Zero failures.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CLI = [sys.executable, "-c", "from rspp.cli import main; main()", "cp"]


def test_schemathesis_all_checks_zero_failures(openapi_fuzz: Callable[[str], int]) -> None:
    """On SQLite; test_cp_openapi_fuzz_postgresql.py runs it on PostgreSQL (a module of its
    own, so that the two runs, minutes each, can go to different xdist workers)."""
    assert openapi_fuzz("sqlite") > 500  # generated cases


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
