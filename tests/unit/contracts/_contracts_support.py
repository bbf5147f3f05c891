"""Shared helpers for the contract tests: fixtures on disk and the reference validator."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "contracts"


def fixture_files(verdict: str) -> list[Path]:
    return sorted((FIXTURES / verdict).glob("*.json"))


def kind_of_fixture(path: Path) -> str:
    return path.name.split("__", 1)[0]


def load(path: Path) -> Any:
    return json.loads(path.read_text())


@lru_cache(maxsize=8)
def _reference_validator(schema_text: str, kind: str) -> Draft202012Validator:
    schema = json.loads(schema_text)
    return Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"})


def reference_validator(schema: dict[str, Any], kind: str) -> Draft202012Validator:
    """jsonschema's Draft 2020-12 validator for one kind of the reference schema."""
    return _reference_validator(json.dumps(schema, sort_keys=True), kind)
