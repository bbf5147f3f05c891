"""Authority guard (RK-24): lease epoch at ingress and egress, idempotency dedupe.

F-156 / NF-027: every ingress event and every egress output carries the
session's lease epoch. Anything older than the current epoch is a
``stale_epoch_reject``; after revocation nothing passes until a new lease.
The epoch only grows (fencing token). Accepted stale outputs are 0 by
construction: :meth:`AuthorityGuard.admit_output` is the only door to egress
and it compares epochs before anything else.

F-158: :class:`IdempotencyDedupe` remembers idempotency keys (bounded, oldest
evicted first) across retries, reconnects and failovers (the window can be
exported and re-imported by the new owner) and keeps a lineage marker of every
duplicate it suppressed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from rspp.errors import AuthorityError
from rspp.turns._arbiter import AuthorityVerdict

__all__ = ["AuthorityGuard", "DuplicateMarker", "IdempotencyDedupe", "IngressVerdict"]


class IngressVerdict(StrEnum):
    ACCEPT = "accept"
    STALE_EPOCH = "stale_epoch"
    DEAUTHORIZED = "deauthorized"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class DuplicateMarker:
    """Lineage of a suppressed duplicate: which event first carried the key."""

    idempotency_key: str
    first_event_id: str
    duplicate_event_id: str


class IdempotencyDedupe:
    """Bounded memory of idempotency keys -> first event id."""

    __slots__ = ("_keys", "capacity", "markers")

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise AuthorityError(f"IdempotencyDedupe capacity={capacity}: must be >= 1")
        self.capacity = capacity
        self._keys: OrderedDict[str, str] = OrderedDict()
        self.markers: list[DuplicateMarker] = []

    def seen(self, key: str, event_id: str) -> bool:
        """True (and a lineage marker) when ``key`` was already accepted."""
        first = self._keys.get(key)
        if first is not None:
            self.markers.append(DuplicateMarker(key, first, event_id))
            return True
        self._keys[key] = event_id
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return False

    def forget(self, key: str) -> None:
        """Take ``key`` back: its input was not taken after all (its turn was refused), so
        the client may send it again under the same key."""
        self._keys.pop(key, None)

    def export(self) -> list[tuple[str, str]]:
        """The window, oldest first, for hand-over to a failover owner."""
        return list(self._keys.items())

    def load(self, window: Iterable[tuple[str, str]]) -> None:
        for key, event_id in window:
            self._keys.setdefault(key, event_id)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


class AuthorityGuard:
    """The lease epoch of one session and the ingress/egress checks against it."""

    __slots__ = ("accepted_outputs", "dedupe", "epoch", "rejected", "revoked")

    def __init__(self, epoch: int, *, dedupe: IdempotencyDedupe | None = None) -> None:
        if epoch < 0:
            raise AuthorityError(f"authority epoch={epoch}: must be >= 0")
        self.epoch = epoch
        self.revoked = False
        self.dedupe = dedupe if dedupe is not None else IdempotencyDedupe()
        self.rejected: dict[IngressVerdict, int] = {}
        self.accepted_outputs = 0

    def rotate(self, new_epoch: int) -> None:
        """A new lease (rotation or failover); the epoch never goes backwards."""
        if new_epoch <= self.epoch and not (self.revoked and new_epoch == self.epoch):
            raise AuthorityError(
                f"lease epoch {new_epoch} is not newer than the current epoch {self.epoch}; "
                "epochs are fencing tokens and only grow"
            )
        self.epoch = new_epoch
        self.revoked = False

    def revoke(self) -> None:
        """This runtime lost the lease: everything is refused until a new one."""
        self.revoked = True

    def verdict(self, epoch: int) -> AuthorityVerdict:
        """The arbiter's authority-check input for a proposal carrying ``epoch``."""
        if self.revoked:
            return AuthorityVerdict.DEAUTHORIZED
        return AuthorityVerdict.STALE if epoch < self.epoch else AuthorityVerdict.VALID

    def _count(self, v: IngressVerdict) -> IngressVerdict:
        if v is not IngressVerdict.ACCEPT:
            self.rejected[v] = self.rejected.get(v, 0) + 1
        return v

    def check_ingress(
        self, epoch: int, *, event_id: str, idempotency_key: str | None = None
    ) -> IngressVerdict:
        """Epoch check first (a stale event never reaches a node), then dedupe."""
        if self.revoked:
            return self._count(IngressVerdict.DEAUTHORIZED)
        if epoch < self.epoch:
            return self._count(IngressVerdict.STALE_EPOCH)
        if idempotency_key is not None and self.dedupe.seen(idempotency_key, event_id):
            return self._count(IngressVerdict.DUPLICATE)
        return IngressVerdict.ACCEPT

    def admit_output(self, epoch: int) -> bool:
        """Egress check: only outputs produced under the current, unrevoked epoch pass."""
        if self.revoked or epoch != self.epoch:  # a newer epoch is unconfirmed: refuse too
            self._count(IngressVerdict.DEAUTHORIZED if self.revoked else IngressVerdict.STALE_EPOCH)
            return False
        self.accepted_outputs += 1
        return True
