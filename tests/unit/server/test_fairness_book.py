"""The fairness SLO's window over a runtime's pool waits (NF-033), on an injected clock.

A wait over the objective is one starvation incident when it ends; the alert state
(``met``) counts the longest wait of the window, ended or still queued, so it fires
while a tenant is still waiting and resolves once the window no longer holds the wait.
A wait cancelled while queued is not service and is not counted.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from rspp.server._fairness import FairnessBook, FairnessSlo

pytestmark = pytest.mark.unit


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_starved_tenant_fires_while_waiting_counts_once_and_resolves_after_the_window(
) -> None:
    clock = _Clock()
    registry = CollectorRegistry()
    book = FairnessBook(FairnessSlo(max_wait_ms=500, window_s=10), registry, clock)
    quick = book.started("llm", "acme")
    clock.now += 0.1
    book.ended(quick, granted=True)
    starved = book.started("llm", "globex")
    clock.now += 0.6  # globex still queued, 600 ms > 500 ms
    [acme, globex] = book.verdicts()
    assert (acme.tenant, acme.waits, acme.met) == ("acme", 1, True)
    assert acme.max_wait_ms == pytest.approx(100)
    assert (globex.queued, globex.waits, globex.incidents, globex.met) == (1, 0, 0, False)
    assert registry.get_sample_value("rspp_fairness_slo_alert_firing", {"key": "llm"}) == 1
    book.ended(starved, granted=True)
    [_, globex] = book.verdicts()
    assert (globex.queued, globex.waits, globex.incidents, globex.met) == (0, 1, 1, False)
    assert registry.get_sample_value("rspp_pool_wait_ms_count",
                                     {"key": "llm", "fairness_key": "globex"}) == 1
    clock.now += 10.5  # the window no longer holds the wait: resolved, the incident stays
    [acme, globex] = book.verdicts()
    assert (globex.waits, globex.incidents, globex.met, acme.waits) == (0, 1, True, 0)
    assert registry.get_sample_value("rspp_fairness_slo_alert_firing", {"key": "llm"}) == 0
    assert registry.get_sample_value("rspp_fairness_starvation_incidents_total",
                                     {"key": "llm", "fairness_key": "globex"}) == 1


def test_a_cancelled_wait_is_not_service_and_a_bad_objective_is_refused() -> None:
    clock = _Clock()
    book = FairnessBook(FairnessSlo(max_wait_ms=500), CollectorRegistry(), clock)
    ticket = book.started("llm", "acme")
    clock.now += 5
    book.ended(ticket, granted=False)
    assert book.verdicts() == []  # no slot was granted, nothing queued: no service yet
    with pytest.raises(ValueError, match="max_wait_ms"):
        FairnessSlo(max_wait_ms=0)
    with pytest.raises(ValueError, match="window_s"):
        FairnessSlo(max_wait_ms=1, window_s=0)
