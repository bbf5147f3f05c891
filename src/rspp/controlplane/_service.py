"""The control-plane facade: every operation, with RBAC and audit, over one store."""

from __future__ import annotations

from rspp.controlplane._ops_changes import ChangeOps
from rspp.controlplane._ops_fleet import FleetOps
from rspp.controlplane._ops_sessions import AdmissionDenied, SessionOps, SessionRoute

__all__ = ["AdmissionDenied", "ControlPlane", "SessionRoute"]


class ControlPlane(ChangeOps, FleetOps, SessionOps):
    """Owns the store and every service; methods take the calling :class:`Principal`.

    Open with :meth:`ControlPlane.open`; close with :meth:`close`.
    """
