"""docs/feature-status.md stays honest: one row per catalog id, and every test it names exists.

The catalog is vendored in tests/fixtures (checked equal to ../shared/reference when that is
present), so the check runs on a clean clone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STATUS = ROOT / "docs" / "feature-status.md"
CATALOG = ROOT / "tests" / "fixtures" / "feature-catalog.json"
SHARED_CATALOG = ROOT.parent / "shared" / "reference" / "feature-catalog.json"
ROW = re.compile(r"^\| ((?:F|NF)-\d+) \|([^|]*)\|([^|]*)\| *(\w+) *\|([^|]*)\|", re.M)
STATUSES = {"done", "partial", "missing"}


def _rows() -> list[tuple[str, str, list[str]]]:
    text = STATUS.read_text(encoding="utf-8")
    out = []
    for m in ROW.finditer(text):
        tests = [t.strip() for t in m.group(5).split("<br>") if t.strip()]
        out.append((m.group(1), m.group(4), tests))
    return out


def _catalog_ids() -> list[str]:
    return [c["id"] for c in json.loads(CATALOG.read_text(encoding="utf-8"))]


def test_vendored_catalog_matches_shared_reference() -> None:
    if not SHARED_CATALOG.exists():
        pytest.skip("../shared/reference is not beside this checkout")
    assert json.loads(CATALOG.read_text()) == json.loads(SHARED_CATALOG.read_text())


def test_every_catalog_id_has_exactly_one_row_with_a_known_status() -> None:
    rows = _rows()
    ids = [r[0] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"ids with more than one row: {dupes}"
    missing = sorted(set(_catalog_ids()) - set(ids))
    assert not missing, f"catalog ids without a row: {missing}"
    unknown = sorted(set(ids) - set(_catalog_ids()))
    assert not unknown, f"rows for ids not in the catalog: {unknown}"
    bad = [(i, s) for i, s, _ in rows if s not in STATUSES]
    assert not bad, f"status must be one of {sorted(STATUSES)}: {bad}"


def _test_exists(ref: str) -> bool:
    ref = ref.removeprefix("tests/")
    file, _, name = ref.partition("::")
    path = ROOT / "tests" / file
    if not path.is_file():
        return False
    if not name:
        return True
    base = name.split("[", 1)[0].split("::")[-1]
    return re.search(rf"^\s*(?:async )?def {re.escape(base)}\b", path.read_text(), re.M) is not None


def test_done_rows_name_tests_that_exist() -> None:
    problems = []
    for ident, status, tests in _rows():
        if status == "done" and not tests:
            problems.append(f"{ident}: done but names no test")
        problems += [f"{ident}: {t} does not exist" for t in tests if not _test_exists(t)]
    assert not problems, "\n".join(problems)


TOTALS = re.compile(
    r"^Totals: (\d+) done, (\d+) partial, (\d+) missing, of (\d+) catalog ids\.$", re.M)


def test_totals_line_matches_the_rows() -> None:
    found = TOTALS.findall(STATUS.read_text(encoding="utf-8"))
    assert len(found) == 1, "docs/feature-status.md needs exactly one line " \
        "'Totals: N done, N partial, N missing, of N catalog ids.'"
    statuses = [s for _, s, _ in _rows()]
    counted = tuple(str(n) for n in (statuses.count("done"), statuses.count("partial"),
                                     statuses.count("missing"), len(_catalog_ids())))
    assert found[0] == counted, f"totals line says {found[0]}, the rows give {counted}"
