"""Service-backed tests fail under CI and skip (with a start hint) elsewhere."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

Guard = Callable[[str, str, int], None]
pytestmark = pytest.mark.unit


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_missing_service_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, service_guard: Guard
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="pg_ctlcluster"):
        service_guard("postgresql", "127.0.0.1", _closed_port())


def test_missing_service_skips_locally_with_hint(
    monkeypatch: pytest.MonkeyPatch, service_guard: Guard
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="redis-server"):
        service_guard("redis", "127.0.0.1", _closed_port())


def test_reachable_service_passes(
    monkeypatch: pytest.MonkeyPatch, service_guard: Guard
) -> None:
    monkeypatch.setenv("CI", "true")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        service_guard("redis", "127.0.0.1", int(server.getsockname()[1]))
