"""A replay freezes the recorded capability snapshots into its plans (F-161).

A recorded plan's ``capability:*`` nondeterministic inputs say what the
transport and the bound providers supported when the turn opened. A replay has
neither that connection nor those adapters, so its plan resolver is given the
recorded values per turn (like the recorded turn-start wall clock): the
replayed plan then has the recorded plan's hash. A served turn that opened on
expired snapshots (its control plane unreachable) carries the ``snapshot_freeze``
input; the replay's snapshots never expire, so it is given back the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rspp.contracts import CAPABILITY_KEY_PREFIX, NondeterministicSource
from rspp.turns._determinism import SNAPSHOT_FREEZE_KEY

__all__ = ["RecordedCapabilities", "TurnCapabilities", "collect_capabilities"]

#: a turn's recorded inputs: (input_key, source, evidence_ref)
TurnCapabilities = tuple[tuple[str, NondeterministicSource, str], ...]


def collect_capabilities(plan: Mapping[str, Any],
                         into: dict[str, TurnCapabilities]) -> None:
    """Add a recorded plan record's capability inputs to ``into`` (by turn id)."""
    det = plan.get("determinism")
    inputs = det.get("nondeterministic_inputs") if isinstance(det, Mapping) else None
    found = tuple((str(i["input_key"]), _source(i.get("source")),
                   str(i.get("evidence_ref", "")))
                  for i in inputs or () if isinstance(i, Mapping)
                  and (str(i.get("input_key", "")).startswith(CAPABILITY_KEY_PREFIX)
                       or i.get("input_key") == SNAPSHOT_FREEZE_KEY))
    if found and isinstance(plan.get("turn_id"), str):
        into[plan["turn_id"]] = found


def _source(value: object) -> NondeterministicSource:
    """The recorded input's source (an unknown value replays as ``other``: the replayed
    plan's hash then differs and the PLAN divergence names it)."""
    try:
        return NondeterministicSource(str(value))
    except ValueError:
        return NondeterministicSource.OTHER


class RecordedCapabilities:
    """The plan resolver's capability source in a replay: the recorded snapshots."""

    def __init__(self, by_turn: Mapping[str, TurnCapabilities]) -> None:
        self.by_turn = dict(by_turn)

    def capture(self, turn_id: str, bindings: Mapping[str, str]
                ) -> Sequence[tuple[str, NondeterministicSource, str]]:
        return self.by_turn.get(turn_id, ())
