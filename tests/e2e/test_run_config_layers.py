"""Configuration layers defaults -> environment -> tenant -> session, applied by
``rspp run`` to the session it runs (F-080).

The offline assistant's spec sets the defaults (budgets, providers); ``RSPP_SPEC__*``
variables override some of them (environment), the layers file overrides fewer for tenant
``acme`` and fewer still for the session. Each value comes from the highest layer that
sets it: the resolved spec (``--resolved-out``) names the winning layer of every value, and
the session's frozen turn plan (timeline) carries the resolved budgets and provider. A run
with only the environment layer (no ``--layers``) still applies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = "budgets: {turn_ms: 50000, node_ms: 40000, path_ms: 45000, provider_timeout_ms: 20000}"
ENV = {"RSPP_SPEC__BUDGETS__TURN_MS": "49000", "RSPP_SPEC__BUDGETS__NODE_MS": "39000",
       "RSPP_SPEC__BUDGETS__PATH_MS": "44000", "RSPP_SPEC__PROVIDERS__LLM__TIMEOUT_MS": "19000"}
SESSION = "local-session"  # rspp run's session id
LAYERS = f"""\
tenants:
  acme:
    budgets.turn_ms: 48000
    budgets.node_ms: 38000
    providers.llm.primary: local-responder
  globex:
    budgets.turn_ms: 30000
sessions:
  {SESSION}:
    budgets.turn_ms: 47000
"""


def _spec(tmp_path: Path) -> Path:
    text = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    spec = tmp_path / "voice.yaml"
    spec.write_text(text.replace("\nproviders:", f"\n{DEFAULTS}\n\nproviders:", 1))
    return spec


def _plan(timeline: Path) -> dict[str, Any]:
    lines = [json.loads(x) for x in timeline.read_text().splitlines()]
    (plan,) = [ln["record"] for ln in lines if ln["kind"] == "resolved_turn_plan"]
    return plan


def test_run_applies_defaults_environment_tenant_and_session_layers_in_that_order(
    rspp_cli: RsppCli, spoken: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    spec, layers = _spec(tmp_path), tmp_path / "layers.yaml"
    layers.write_text(LAYERS)
    resolved, timeline = tmp_path / "resolved.json", tmp_path / "t.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--tenant", "acme",
                       "--layers", str(layers), "--resolved-out", str(resolved),
                       "--timeline", str(timeline), "--json")
    assert res.returncode == 0, res.stderr
    (turn,) = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit"
    values = {v["path"]: (v["value"], v["source"]) for v in json.loads(resolved.read_text())[
        "values"]}
    assert values["budgets.turn_ms"] == (47000, "session")
    assert values["budgets.node_ms"] == (38000, "tenant")
    assert values["providers.llm.primary"] == ("local-responder", "tenant")
    assert values["budgets.path_ms"] == (44000, "environment")
    assert values["providers.llm.timeout_ms"] == (19000, "environment")
    assert values["budgets.provider_timeout_ms"] == (20000, "spec")
    assert values["budgets.edge_ms"][1] == "execution_profile_default"
    # ... and the session ran with them: its frozen plan
    plan = _plan(timeline)
    assert (plan["budgets"]["turn_budget_ms"], plan["budgets"]["node_budget_ms_default"],
            plan["budgets"]["path_budget_ms_default"]) == (47000, 38000, 44000)
    assert plan["provider_bindings"]["llm"] == "local-responder"

    # another tenant: its own layer over the environment, no session layer of its own
    # beyond the shared session id's
    other = tmp_path / "other.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--tenant", "globex",
                       "--layers", str(layers), "--timeline", str(other), "--json")
    assert res.returncode == 0, res.stderr
    plan = _plan(other)
    assert (plan["budgets"]["turn_budget_ms"], plan["budgets"]["node_budget_ms_default"]) == (
        47000, 39000)
    assert plan["provider_bindings"]["llm"] == "local"

    # no layers file: the environment still overrides the spec's defaults
    env_only = tmp_path / "env.jsonl"
    res = rspp_cli.run(str(spec), "--input", str(spoken["question"]), "--timeline",
                       str(env_only), "--json")
    assert res.returncode == 0, res.stderr
    plan = _plan(env_only)
    assert (plan["budgets"]["turn_budget_ms"], plan["budgets"]["node_budget_ms_default"],
            plan["budgets"]["path_budget_ms_default"]) == (49000, 39000, 44000)
