"""Fixtures for Kernel I runtime tests: contract-record validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jsonschema
import msgspec
import pytest


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
