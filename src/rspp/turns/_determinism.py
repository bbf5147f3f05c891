"""DeterminismContext construction and capture of nondeterministic inputs (F-150).

The seed is derived from (session id, turn id) with SHA-256, so a replay of the
same turn gets the same seed without recording it separately. Ordering markers
name the rules the executor orders events by; the merge rule identity comes
from the graph's fan-in declaration. Nondeterministic inputs (wall-clock reads,
external calls, random draws, operator overrides) are captured with an evidence
reference so replay can substitute the recorded value.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Iterable

from rspp.contracts import DeterminismContext, NondeterministicInput, NondeterministicSource

__all__ = [
    "DEFAULT_MERGE_RULE",
    "SNAPSHOT_FREEZE_KEY",
    "DeterminismCapture",
    "build_determinism_context",
    "derive_seed",
    "freeze_ref",
]

#: Rule used when a graph has no fan-in merge: events are ordered by runtime_sequence.
DEFAULT_MERGE_RULE = ("runtime_sequence_order", "1.0")
_LANE_ORDER = "lane_priority:ControlLane>DataLane>TelemetryLane"
#: ``input_key`` of the mark a turn opened on expired snapshots carries (issue 14: the
#: control plane unreachable, the session's lease bound holding): the failed turn-start
#: call is the external input its plan depends on (``external_call``)
SNAPSHOT_FREEZE_KEY = "snapshot_freeze"


def freeze_ref(stale: Iterable[str]) -> str:
    """The freeze mark's ``evidence_ref``: why, and which snapshots had expired."""
    return "control_plane_unreachable;expired:" + ",".join(stale)


def derive_seed(session_id: str, turn_id: str) -> int:
    """A 63-bit seed that is a pure function of the session and turn ids."""
    digest = hashlib.sha256(f"{session_id}\x00{turn_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class DeterminismCapture:
    """Captured nondeterministic inputs of one turn, in capture order."""

    __slots__ = ("_inputs", "_rng", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng: random.Random | None = None
        self._inputs: list[NondeterministicInput] = []

    @property
    def rng(self) -> random.Random:
        """The turn's random source, seeded with :attr:`seed` (made on first use)."""
        if self._rng is None:
            self._rng = random.Random(self.seed)
        return self._rng

    def capture(self, input_key: str, source: NondeterministicSource, evidence_ref: str) -> None:
        self._inputs.append(
            NondeterministicInput(input_key=input_key, source=source, evidence_ref=evidence_ref)
        )

    @property
    def inputs(self) -> tuple[NondeterministicInput, ...]:
        return tuple(self._inputs)


@functools.lru_cache(maxsize=64)
def _topo_marker(topo_order: tuple[str, ...]) -> str:
    """The ordering marker of a topological order (a graph's: the same every turn)."""
    topo = ",".join(topo_order)
    return "topo_sha256:" + hashlib.sha256(topo.encode()).hexdigest()[:16]


def build_determinism_context(
    *,
    seed: int,
    start_sequence: int,
    topo_order: Iterable[str],
    merge_rule: tuple[str, str] | None,
    inputs: Iterable[NondeterministicInput] = (),
) -> DeterminismContext:
    """The plan's DeterminismContext (seed, ordering markers, merge rule, inputs)."""
    topo_marker = _topo_marker(tuple(topo_order))
    rule_id, rule_version = merge_rule if merge_rule is not None else DEFAULT_MERGE_RULE
    markers = (f"runtime_sequence_from:{start_sequence}", _LANE_ORDER, topo_marker)
    return DeterminismContext(
        seed=seed,
        ordering_markers=markers,
        merge_rule_id=rule_id,
        merge_rule_version=rule_version,
        nondeterministic_inputs=tuple(inputs),
        ordering_marker=markers[0],
    )
