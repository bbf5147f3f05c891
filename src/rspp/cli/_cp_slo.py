"""``rspp cp slo``: the deployment's availability SLO and error budget (NF-005, NF-030)."""

from __future__ import annotations

from typing import Any

import typer

from rspp.cli._cp import KeyOpt, ServerOpt, _call, _print, cp_app

slo_app = typer.Typer(help="Availability SLO: error budget, burn-rate alerts, rollout freeze.",
                      no_args_is_help=True)
cp_app.add_typer(slo_app, name="slo")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:g}%"


def slo_text(report: dict[str, Any]) -> str:
    """One block per scope: availability, budget left, each alert's burn rates."""
    lines = [f"objective {report['objective_percent']:g}% over {report['window_s']} s"]
    for s in report["scopes"]:
        left = s["budget_remaining"]
        budget = "-" if left is None else f"{100 * left:.1f}% of the budget left"
        lines.append(f"{s['scope']}: {s['state']}  availability {_pct(s['availability_percent'])}"
                     f" ({s['bad']} bad of {s['events']} turns)  {budget}")
        for a in s["alerts"]:
            rates = "/".join("-" if w["burn_rate"] is None else f"{w['burn_rate']:g}"
                             for w in (a["long"], a["short"]))
            lines.append(f"  alert {a['name']}: {'FIRING' if a['firing'] else 'ok'}  burn "
                         f"{rates} (long/short) >= {a['threshold']:g}"
                         + ("  [freezes rollouts]" if a["freeze"] else ""))
        if s.get("freeze_reason"):
            lines.append(f"  frozen: {s['freeze_reason']}")
    return "\n".join(lines)


@slo_app.command("status")
def status(
    scope: str = typer.Option(None, "--scope", help="One pipeline (with the deployment's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str = ServerOpt,
    api_key: str = KeyOpt,
) -> None:
    """Availability, error budget left and burn-rate alerts per pipeline; exit 1 while any
    scope is frozen (its budget burns too fast or is spent)."""
    params = {"scope": scope} if scope else None
    report = _call(server, api_key, lambda c: c.request("GET", "/v1/slo", params=params))
    if as_json:
        _print(report)
    else:
        typer.echo(slo_text(report))
    if any(s.get("freeze_reason") for s in report["scopes"]):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """The commands joined ``rspp cp`` when this module was imported (``cp_app``)."""
    del app
