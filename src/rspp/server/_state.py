"""The control plane as a served session's durable state store (F-155).

:class:`ControlPlaneStateStore` implements :class:`~rspp.turns.DurableStateStore`
over the control plane's HTTP API (``GET``/``PUT /v1/sessions/{id}/state``): the
checkpoints of a session live in the control plane's database (PostgreSQL in
production), outside every runtime process, so the runtime a session fails over to
resumes from them. Each write names this runtime and the lease epoch it holds; the
control plane refuses a write from anyone but the current holder (a previous holder
only until the new one loaded the state), and a write against a version another
owner moved on from: both surface as :class:`~rspp.turns.StaleStateError` (this
runtime no longer owns the session).
"""

from __future__ import annotations

from collections.abc import Callable

from rspp.controlplane import ControlPlaneClient, CPError
from rspp.controlplane._session_state import StateWrite
from rspp.turns import StaleStateError

__all__ = ["ControlPlaneStateStore"]

_STALE = ("stale_epoch", "stale_state")


class ControlPlaneStateStore:
    """Session checkpoints in the control plane, written by the lease holder only."""

    def __init__(self, client: ControlPlaneClient, runtime_id: str,
                 epoch: Callable[[], int]) -> None:
        self.client = client
        self.runtime_id = runtime_id
        self.epoch = epoch

    async def load(self, session_id: str) -> tuple[int, dict[str, object]]:
        """The last checkpoint, taken over for this runtime's epoch: from now on the
        previous holder can no longer write (its last checkpoint counted until now)."""
        data = await self.client.request(
            "GET", f"/v1/sessions/{session_id}/state",
            params={"runtime_id": self.runtime_id, "lease_epoch": str(self.epoch())})
        doc = data.get("document")
        return int(data.get("version", 0)), dict(doc) if isinstance(doc, dict) else {}

    async def save(self, session_id: str, expected_version: int,
                   values: dict[str, object]) -> int:
        body = StateWrite(runtime_id=self.runtime_id, lease_epoch=self.epoch(),
                          expected_version=expected_version, document=values)
        try:
            data = await self.client.request("PUT", f"/v1/sessions/{session_id}/state",
                                             json=body)
        except CPError as exc:
            if exc.code in _STALE:
                raise StaleStateError(exc.message) from None
            raise
        return int(data["version"])
