"""The availability SLO's verdicts (NF-005, NF-030): budget, multi-window burn rates."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspp.controlplane._slo import (
    SloConfig,
    SloConfigError,
    WindowCount,
    evaluate_scope,
    load_slo_config,
)

pytestmark = pytest.mark.unit



def _config(tmp_path: Path, text: str) -> SloConfig:
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    return load_slo_config(path)


def test_an_alert_fires_only_while_both_windows_burn(tmp_path: Path) -> None:
    config = _config(tmp_path, """objective_percent: 99
window_s: 86400
alerts: [{name: page, long_window_s: 3600, short_window_s: 300, burn_rate: 10, freeze: true}]
""")
    # 20% of the last hour failed (burn 20) but the last 5 minutes are clean (burn 0):
    # the incident is over, nothing pages and nothing freezes
    over = evaluate_scope(config, "p", {86400: WindowCount(events=100_000, bad=110),
                                        3600: WindowCount(events=500, bad=100),
                                        300: WindowCount(events=50, bad=0)})
    assert [a.firing for a in over.alerts] == [False] and over.freeze_reason is None
    assert over.alerts[0].long.burn_rate == 20.0 and over.alerts[0].short.burn_rate == 0.0
    # still failing now: both windows burn >= 10
    now = evaluate_scope(config, "p", {86400: WindowCount(events=100_000, bad=110),
                                       3600: WindowCount(events=500, bad=100),
                                       300: WindowCount(events=50, bad=10)})
    assert now.alerts[0].firing and now.state == "burning"
    assert now.freeze_reason is not None and "alert page fires" in now.freeze_reason
    # 0.11% of the day's turns failed: 11% of the day's 1% budget is spent
    assert now.availability_percent == 99.89 and now.budget_remaining == 0.89


def test_budget_left_without_alerts_and_the_exhausted_freeze(tmp_path: Path) -> None:
    config = _config(tmp_path, "objective_percent: 90\nmin_events: 10\n")
    half = evaluate_scope(config, "p", {config.window_s: WindowCount(events=100, bad=5)})
    assert (half.state, half.budget_remaining, half.freeze_reason) == ("ok", 0.5, None)
    spent = evaluate_scope(config, "p", {config.window_s: WindowCount(events=100, bad=10)})
    assert spent.state == "exhausted" and spent.budget_remaining == 0.0
    assert spent.freeze_reason is not None and "exhausted: 10 of 100 turns" in spent.freeze_reason
    few = evaluate_scope(config, "p", {config.window_s: WindowCount(events=2, bad=2)})
    assert few.state == "ok" and few.freeze_reason is None  # below min_events: no verdict
    assert evaluate_scope(config, "p", {}).state == "no_data"
    relaxed = _config(tmp_path, "objective_percent: 90\nfreeze_on_exhausted: false\n")
    assert evaluate_scope(relaxed, "p", {relaxed.window_s: WindowCount(events=10, bad=10)}
                          ).freeze_reason is None


@pytest.mark.parametrize(("text", "names"), [
    ("objective_percent: 100\n", "objective_percent"),
    ("objective_percent: 99\nwindow: 60\n", "window"),
    ("objective_percent: 99\nalerts: [{name: a, long_window_s: 60, short_window_s: 60, "
     "burn_rate: 2}]\n", "alerts[0].short_window_s"),
    ("objective_percent: 99\nalerts: [{name: a, long_window_s: 60, short_window_s: 6, "
     "burn_rate: 0}]\n", "burn_rate"),
    ("- 1\n", "Expected `object`"),
])
def test_a_bad_slo_file_is_refused_naming_the_field(tmp_path: Path, text: str,
                                                    names: str) -> None:
    with pytest.raises(SloConfigError) as caught:
        _config(tmp_path, text)
    assert names in str(caught.value)


def test_rspp_cp_serve_refuses_a_bad_slo_file_before_serving(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rspp.cli._app import app

    (tmp_path / "slo.yaml").write_text("objective_percent: 100\n")
    result = CliRunner().invoke(app, ["cp", "serve", "--admin-key", "k", "--db",
                                      str(tmp_path / "cp.db"), "--slo", str(tmp_path / "slo.yaml")])
    assert result.exit_code == 2
    assert "--slo" in result.output and "$.objective_percent" in result.output
    assert not (tmp_path / "cp.db").exists()
