"""Shared fixtures: real local services (PostgreSQL, Redis) and contract schema.

Tests that need PostgreSQL or Redis fail when ``CI`` is set and the service is
missing; outside CI they skip with a message saying how to start it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference"
#: the copy packaged with rspp.contracts (its validator reads it); equal to shared/reference
VENDORED_REFERENCE = REPO_ROOT / "src" / "rspp" / "contracts"

#: Where the tests' child processes (``rspp run``, ``rspp serve``, ``rspp cp ...``: hundreds a
#: run) keep compiled bytecode when the environment forbids writing it beside the sources
#: (PYTHONDONTWRITEBYTECODE): without a cache each child compiles every module it imports
#: afresh, about 0.5 s of CPU per child. Outside the checkout, so the tree stays clean;
#: keyed by source path, so worktrees and concurrent runs do not mix.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = os.path.join(
        tempfile.gettempdir(), f"rspp-test-pycache-{os.getuid()}")

#: Modules a plugin imports only when the session finishes. CPython 3.11.7's AST constructor
#: keeps its recursion depth in interpreter-wide state, so compiling a module while another
#: thread builds an AST can fail with "SystemError: AST constructor recursion depth
#: mismatch" (CPython gh-106905); schemathesis's xdist hook imports its report writers in
#: pytest_sessionfinish, and a run crashed there after every test had passed. Imported here,
#: at start-up while nothing else runs, they are compiled once and the hook finds them loaded
#: (allure is not installed: its failed import still leaves the rewritten bytecode cached).
_LATE_PLUGIN_MODULES = (
    "schemathesis.reporting.html.writer",
    "schemathesis.reporting.junitxml",
    "schemathesis.reporting.allure",
)
for _name in _LATE_PLUGIN_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)

PG_URL = os.environ.get("RSPP_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

_START_HINTS = {
    "postgresql": (
        "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
    ),
    "redis": "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI) when a required service is down."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}; {_START_HINTS[name]}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def service_guard() -> Callable[[str, str, int], None]:
    """The skip-or-fail check itself, for tests of this policy."""
    return require_service


@pytest.fixture
def pg_url() -> str:
    """URL of the real PostgreSQL test database."""
    require_service("postgresql", "127.0.0.1", 5432)
    return PG_URL


@pytest.fixture
def redis_address() -> tuple[str, int]:
    require_service("redis", REDIS_HOST, REDIS_PORT)
    return REDIS_HOST, REDIS_PORT


def reference_path(name: str) -> Path:
    """A file of shared/reference, falling back to the copy packaged in rspp.contracts."""
    for base in (SHARED_REFERENCE, VENDORED_REFERENCE):
        candidate = base / name
        if candidate.exists():
            return candidate
    raise FileNotFoundError(name)


@pytest.fixture(scope="session")
def reference_schema() -> dict[str, Any]:
    """The reference wire-contract JSON Schema."""
    text = reference_path("contract-artifacts.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@pytest.fixture
def check_records(reference_schema: dict[str, Any]) -> Callable[[Iterable[Any]], int]:
    """Validate msgspec records against the reference schema; returns how many."""
    validator = jsonschema.Draft202012Validator(reference_schema)

    def check(records: Iterable[Any]) -> int:
        n = 0
        for rec in records:
            doc = msgspec.to_builtins(rec)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            assert not errors, f"{doc} breaks the schema: {[e.message for e in errors][:3]}"
            n += 1
        assert n, "check_records got no records: the check would pass vacuously"
        return n

    return check
