"""CI's compatibility check of the wire contract (F-028, NF-010).

The schema the code exports (``rspp contracts schema``) is compared with the one the last
release shipped (tests/fixtures/contracts/released-schema-v1.0.json) by the same rules as
``rspp contracts compat``: additive changes pass; a breaking change fails this test, listing
each change with its schema path, unless ``SCHEMA_VERSION``'s major was bumped (then add
the new release's schema here as the next baseline).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from rspp.contracts import SCHEMA_VERSION, all_schemas, compare_schemas

pytestmark = pytest.mark.unit

BASELINE = Path(__file__).resolve().parents[2] / "fixtures" / "contracts" / \
    "released-schema-v1.0.json"


def _current() -> dict[str, Any]:
    return {**all_schemas(), "version": SCHEMA_VERSION}


def test_exported_contract_schema_keeps_the_released_one_readable() -> None:
    report = compare_schemas(json.loads(BASELINE.read_text()), _current())
    assert report.allowed, (
        f"breaking wire-contract change without a major version bump "
        f"({report.old_version} -> {report.new_version}):\n"
        + "\n".join(f"  {c.path}: {c.message}" for c in report.breaking))


def test_the_check_names_a_breaking_change_and_lets_a_major_bump_through() -> None:
    baseline = json.loads(BASELINE.read_text())
    changed = copy.deepcopy(_current())
    changed["$defs"]["DecisionOutcome"]["required"].append("turn_id")
    report = compare_schemas(baseline, changed)
    assert not report.allowed
    assert [c.path for c in report.breaking] == ["$defs/DecisionOutcome.turn_id"]
    assert compare_schemas(baseline, {**changed, "version": "v2.0"}).allowed
