"""A deployment's availability SLO and its error-budget policy (NF-005, NF-030).

The objective is declared per deployment in a file given to ``rspp cp serve --slo FILE``
(YAML or JSON)::

    objective_percent: 99.9      # share of good events the deployment promises
    window_s: 2592000            # the error budget's window (30 days)
    min_events: 10               # fewer events in a window: no burn rate, no alert
    freeze_on_exhausted: true    # refuse rollouts/publishes while the budget is spent
    excused_outcomes: [cancelled, barge_in, user_cancel, session_end, transport_disconnect]
    alerts:                      # multi-window burn-rate alerts (incident thresholds)
      - {name: page, long_window_s: 3600, short_window_s: 300, burn_rate: 14.4, freeze: true}
      - {name: ticket, long_window_s: 21600, short_window_s: 1800, burn_rate: 6}

Events are the accepted turns of live sessions, as runtimes report them with their gate
samples (``TurnGateSample.terminal``): a turn that committed or ended for the user's
reasons (``excused_outcomes``: cancel, barge-in, hang-up) is good; every other abort
(provider or runtime fault, budget exhausted, lost authority, missing evidence) is bad:
deny by default, so a new fault reason is never excused by accident. The burn rate over
a window is its bad share divided by the budget (``1 - objective``): 1 spends the budget
exactly over ``window_s``. An alert fires while both its long and its short window burn
at least ``burn_rate`` (the long window says the budget is really going, the short one
that it still is). Everything here is pure: :mod:`rspp.controlplane._slo_book` counts
the events and applies the verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["ALL", "AlertState", "BurnAlert", "ScopeSlo", "SloConfig", "SloConfigError",
           "SloReport", "WindowBurn", "WindowCount", "evaluate_scope", "load_slo_config"]

#: the scope that sums every pipeline: its verdict freezes every scope
ALL = "*"
#: abort reasons that are not the service failing: the user cancelled, barged in, ended
#: the session or hung up; every other abort reason counts against the budget
DEFAULT_EXCUSED = ("cancelled", "cancel", "barge_in", "user_cancel", "session_end",
                   "explicit_end_of_utterance", "disconnect", "transport_disconnect")
_Seconds = Annotated[int, Meta(ge=1, le=31_622_400)]
_Name = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
SloState = Literal["no_data", "ok", "burning", "exhausted"]


class SloConfigError(ValueError):
    """The SLO file is unreadable or invalid; the message names the field."""


class BurnAlert(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: _Name
    long_window_s: _Seconds
    short_window_s: _Seconds
    burn_rate: Annotated[float, Meta(gt=0, le=1_000_000)]
    #: while it fires, rollouts and publishes to the scope are refused (409)
    freeze: bool = False


class SloConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    objective_percent: Annotated[float, Meta(gt=0, lt=100)]
    window_s: _Seconds = 2_592_000
    min_events: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    freeze_on_exhausted: bool = True
    excused_outcomes: Annotated[tuple[_Name, ...], Meta(max_length=32)] = DEFAULT_EXCUSED
    alerts: Annotated[tuple[BurnAlert, ...], Meta(max_length=8)] = ()

    @property
    def budget(self) -> float:
        """The share of events allowed to be bad."""
        return 1 - self.objective_percent / 100

    def windows(self) -> list[int]:
        """Every window the verdicts need, longest first (events older are forgotten)."""
        spans = {self.window_s}
        for a in self.alerts:
            spans.update((a.long_window_s, a.short_window_s))
        return sorted(spans, reverse=True)


def load_slo_config(path: Path) -> SloConfig:
    """Read and validate the SLO file; :class:`SloConfigError` names the bad field."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SloConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SloConfigError(f"{path}: not YAML/JSON: {exc}") from None
    try:
        config = msgspec.convert(raw, SloConfig)
    except msgspec.ValidationError as exc:
        raise SloConfigError(f"{path}: {exc}") from None
    for i, a in enumerate(config.alerts):
        if a.short_window_s >= a.long_window_s:
            raise SloConfigError(f"{path}: alerts[{i}].short_window_s {a.short_window_s} must "
                                 f"be below long_window_s {a.long_window_s}")
    names = [a.name for a in config.alerts]
    if len(set(names)) != len(names):
        raise SloConfigError(f"{path}: alerts[].name must be unique: {names}")
    return config


class WindowCount(msgspec.Struct, frozen=True, kw_only=True):
    events: int = 0
    bad: int = 0


class WindowBurn(msgspec.Struct, frozen=True, kw_only=True):
    window_s: int
    events: int
    bad: int
    #: bad share / budget; ``None`` below ``min_events``
    burn_rate: float | None


class AlertState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    threshold: float
    freeze: bool
    long: WindowBurn
    short: WindowBurn
    firing: bool


class ScopeSlo(msgspec.Struct, frozen=True, kw_only=True):
    """One scope (a pipeline, or ``*`` for the deployment) over the budget window."""

    scope: str
    events: int
    bad: int
    availability_percent: float | None
    #: the budget left over the window (1 untouched, 0 spent, below 0 overspent)
    budget_remaining: float | None
    state: SloState
    alerts: list[AlertState]
    #: why rollouts and publishes to this scope are refused now (``None``: they are not)
    freeze_reason: str | None = None


class SloReport(msgspec.Struct, frozen=True, kw_only=True):
    objective_percent: float
    window_s: int
    at_ms: int
    scopes: list[ScopeSlo]


def _burn(config: SloConfig, window_s: int, count: WindowCount) -> WindowBurn:
    rate = None
    if count.events >= config.min_events:
        rate = round(count.bad / count.events / config.budget, 4)
    return WindowBurn(window_s=window_s, events=count.events, bad=count.bad, burn_rate=rate)


def evaluate_scope(config: SloConfig, scope: str, counts: dict[int, WindowCount]) -> ScopeSlo:
    """The verdict of one scope from its event counts per window (seconds -> count)."""
    total = counts.get(config.window_s, WindowCount())
    alerts = []
    for a in config.alerts:
        long = _burn(config, a.long_window_s, counts.get(a.long_window_s, WindowCount()))
        short = _burn(config, a.short_window_s, counts.get(a.short_window_s, WindowCount()))
        firing = long.burn_rate is not None and short.burn_rate is not None and \
            long.burn_rate >= a.burn_rate and short.burn_rate >= a.burn_rate
        alerts.append(AlertState(name=a.name, threshold=a.burn_rate, freeze=a.freeze,
                                 long=long, short=short, firing=firing))
    if total.events == 0:
        return ScopeSlo(scope=scope, events=0, bad=0, availability_percent=None,
                        budget_remaining=None, state="no_data", alerts=alerts)
    share = total.bad / total.events
    remaining = round(1 - share / config.budget, 4)
    exhausted = remaining <= 0 and total.events >= config.min_events
    fired = [a for a in alerts if a.firing]
    state: SloState = "exhausted" if exhausted else "burning" if fired else "ok"
    reason = None
    freezing = [a for a in fired if a.freeze]
    if freezing:
        first = freezing[0]
        reason = (f"error budget of {scope} burning: alert {first.name} fires (burn rate "
                  f"{first.long.burn_rate:g} over {first.long.window_s} s and "
                  f"{first.short.burn_rate:g} over {first.short.window_s} s >= "
                  f"{first.threshold:g})")
    elif exhausted and config.freeze_on_exhausted:
        reason = (f"error budget of {scope} exhausted: {total.bad} of {total.events} turns "
                  f"failed over {config.window_s} s (objective {config.objective_percent:g}%)")
    return ScopeSlo(scope=scope, events=total.events, bad=total.bad,
                    availability_percent=round(100 * (1 - share), 4),
                    budget_remaining=remaining, state=state, alerts=alerts,
                    freeze_reason=reason)
