"""Public testing kits for RSPP users and our own tests (see :mod:`rspp.testing.fakes`).

:class:`GraphHarness` / :class:`NodeHarness` feed event streams into a graph or a
single node on a virtual clock and expose outputs, control signals and drops (F-128).
"""

from rspp.testing._harness import GraphHarness, NodeHarness, audio_frames, text_partials

__all__ = [
    "GraphHarness",
    "NodeHarness",
    "audio_frames",
    "text_partials",
]
