"""``rspp slo report --per-session``: each session against its own bounds (F-105 step 4).

Timelines written by the real recorder from :class:`TimelineBuilder` turns whose OR-02
evidence carries ``pool_wait_ms`` as a pooled runtime writes it. The bounds come from
the spec's ``slo.session`` and the ``--session-*`` options (which win); a session that
breaks one is named with what it broke, the others pass, and the aggregate gates are
reported beside them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rspp.kernel._clock import VirtualClock
from rspp.observability import (
    JsonLinesFileSink,
    TimelineBuilder,
    TimelineExporter,
    TimelineRecorder,
)
from rspp.testing import TEXT_CHAT_SPEC

#: the conftest's ``run_cli(*args)``: the in-process `rspp` CLI's result
Cli = Callable[..., Any]
pytestmark = pytest.mark.integration


async def _timeline(path: Path, session: str, *turns: dict[str, int | None]) -> Path:
    b = TimelineBuilder(session)
    for i, kw in enumerate(turns, start=1):
        b.turn(f"t{i}", **kw)  # type: ignore[arg-type]
    clock = VirtualClock()
    recorder = TimelineRecorder(clock)
    for record, payload in b.items:
        recorder.append(record, payload)
    recorder.close()
    await TimelineExporter(recorder, JsonLinesFileSink(path), clock).run()
    return path


@pytest.fixture
async def timelines(tmp_path: Path) -> list[Path]:
    return [
        await _timeline(tmp_path / "a.jsonl", "s-fast", {"pool_wait_ms": 10},
                        {"pool_wait_ms": 20}),
        await _timeline(tmp_path / "b.jsonl", "s-starved", {"pool_wait_ms": 15},
                        {"pool_wait_ms": 900, "first_output_ms": 1100}),
        await _timeline(tmp_path / "c.jsonl", "s-unpooled", {}),
    ]


def test_a_session_over_its_pool_wait_bound_is_named_and_the_others_pass(
    run_cli: Cli, timelines: list[Path]
) -> None:
    result = run_cli("slo", "report", *map(str, timelines), "--per-session",
                     "--session-pool-wait-max-ms", "500", "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert all(g["status"] != "fail" for g in doc["gates"])  # the aggregate hides it
    rows = {r["session_id"]: r for r in doc["sessions"]}
    assert list(rows) == ["s-fast", "s-starved", "s-unpooled"]
    assert rows["s-fast"] == {
        "session_id": "s-fast", "turns": 2, "pooled_turns": 2, "pool_wait_max_ms": 20.0,
        "pool_wait_turn": "t2", "pool_wait_total_ms": 30.0, "first_output_p95_ms": 300.0,
        "end_to_end_p95_ms": rows["s-fast"]["end_to_end_p95_ms"], "pass": True,
        "breaches": []}
    starved = rows["s-starved"]
    assert starved["pass"] is False and starved["pool_wait_max_ms"] == 900
    assert starved["breaches"] == [
        "session s-starved: turn t2 waited 900 ms for pool slots > pool_wait_max_ms 500"]
    # a session without a pool: nothing queued, nothing to bound
    assert rows["s-unpooled"]["pooled_turns"] == 0
    assert rows["s-unpooled"]["pool_wait_max_ms"] is None and rows["s-unpooled"]["pass"]
    assert starved["breaches"][0] in result.stderr  # named on the console too


def test_the_specs_session_bounds_apply_and_options_override_them(
    run_cli: Cli, timelines: list[Path], tmp_path: Path
) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(TEXT_CHAT_SPEC + "slo: {session: {pool_wait_max_ms: 1000, "
                    "first_output_p95_ms: 1000}}\n")
    table = run_cli("slo", "report", *map(str, timelines), "--spec", str(spec),
                    "--per-session")
    assert table.exit_code == 1
    assert "Per-session isolation (pool_wait_max_ms <= 1000, first_output_p95_ms <= 1000)" \
        in table.stdout
    assert "session s-starved: first_output_p95 1100 ms > first_output_p95_ms 1000" \
        in table.stdout
    assert "waited" not in table.stdout  # 900 ms is within this spec's pool bound
    relaxed = run_cli("slo", "report", *map(str, timelines), "--spec", str(spec),
                      "--per-session", "--session-first-output-p95-ms", "2000", "--json")
    assert relaxed.exit_code == 0, relaxed.output
    assert all(r["pass"] for r in json.loads(relaxed.stdout)["sessions"])
    # without --per-session the spec's session bounds are not the aggregate gates'
    assert run_cli("slo", "report", *map(str, timelines), "--spec", str(spec)
                   ).exit_code == 0


def test_bad_per_session_input_is_one_line(run_cli: Cli, timelines: list[Path],
                                           tmp_path: Path) -> None:
    alone = run_cli("slo", "report", str(timelines[0]), "--session-pool-wait-max-ms", "5")
    assert alone.exit_code == 2
    assert alone.stderr.strip().splitlines() == [
        "--session-pool-wait-max-ms: a per-session bound needs --per-session"]
    spec = tmp_path / "bad.yaml"
    spec.write_text(TEXT_CHAT_SPEC + "slo: {session: {pool_wait_max_ms: 0}}\n")
    bad = run_cli("slo", "report", str(timelines[0]), "--spec", str(spec), "--per-session")
    assert bad.exit_code == 2
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "slo.session.pool_wait_max_ms" in bad.stderr, bad.stderr
