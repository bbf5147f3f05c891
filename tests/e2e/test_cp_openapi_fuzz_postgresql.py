"""test_cp_openapi_fuzz.py's schemathesis run (all checks, every phase, zero failures) on
the PostgreSQL store: a module of its own, so that ``--dist loadfile`` can run it on one
xdist worker while the SQLite run takes another (each takes minutes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_schemathesis_all_checks_zero_failures_on_postgresql(
    openapi_fuzz: Callable[[str], int],
) -> None:
    assert openapi_fuzz("postgresql") > 500  # generated cases
