"""The failover monitor never rotates a lease while it is live, whoever holds it (issue 17).

On SQLite and PostgreSQL with a settable clock. A runtime that believes its lease live may
send until its own bound on it lapses (at most the lease TTL after its last renewal), so
a new epoch issued before the lease expired lets two runtimes talk for one session. The
monitor used to check expiry only when the lease was held by the silent runtime the
session is placed on; a lease of any other holder (a revoked lease, a session that moved
since the monitor read its batch) was rotated at once.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rspp.contracts import RuntimeHealth
from rspp.controlplane import ControlPlane, FailoverMonitor

from .conftest import OPERATOR, VIEWER, FakeClock, spec_version

pytestmark = pytest.mark.integration

HB_TIMEOUT = 1_500
LEASE_TTL = 3_000


async def test_a_revoked_lease_is_failed_over_only_once_it_expired(
    make_cp: Callable[..., object], clock: FakeClock
) -> None:
    cp: ControlPlane = await make_cp(heartbeat_timeout_ms=HB_TIMEOUT,  # type: ignore[misc]
                                     lease_ttl_ms=LEASE_TTL)
    try:
        await cp.publish(OPERATOR, spec_version("1.0.0"))
        await cp.register_runtime(OPERATOR, runtime_id="rt-a", endpoint="ws://rt-a",
                                  capacity=5)
        sid = (await cp.route_session(OPERATOR, tenant_id="acme",
                                      pipeline_name="voice-assistant")).session_id
        await cp.register_runtime(OPERATOR, runtime_id="rt-b", endpoint="ws://rt-b",
                                  capacity=5)
        assert (await cp.acquire_lease(OPERATOR, sid, "rt-a", ttl_ms=LEASE_TTL)).lease.epoch == 1
        clock.advance(HB_TIMEOUT - 100)  # rt-a renewed just before it went silent
        assert (await cp.acquire_lease(OPERATOR, sid, "rt-a", ttl_ms=LEASE_TTL)).lease.epoch == 1
        # an operator revokes it at once (--force: rt-a does not answer a hand-off): epoch 2
        # is nobody's; rt-a may send until its own bound on epoch 1 lapses
        revoked = await cp.change_lease(OPERATOR, sid, revoke=True, force=True)
        assert revoked.lease.epoch == 2
        clock.advance(200)  # rt-a is silent past the heartbeat timeout
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        monitor = FailoverMonitor(cp)
        first = await monitor.sweep()
        assert first.marked == ("rt-a",)
        assert first.migrated == () and first.waiting == 1
        assert (await cp.session_status(VIEWER, sid)).lease_epoch == 2
        clock.advance(LEASE_TTL)  # every bound rt-a could hold has lapsed
        await cp.heartbeat(OPERATOR, "rt-b", health=RuntimeHealth.HEALTHY)
        second = await monitor.sweep()
        assert [(m.session_id, m.to_runtime, m.epoch) for m in second.migrated] == [
            (sid, "rt-b", 3)]
    finally:
        await cp.close()
