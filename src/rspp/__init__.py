"""RSPP, the Realtime Speech Pipeline Platform."""

from rspp._version import __version__
from rspp.errors import RSPPError
from rspp.kernel._node import Node, NodeContext

__all__ = ["Node", "NodeContext", "RSPPError", "__version__"]
