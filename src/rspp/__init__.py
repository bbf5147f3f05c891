"""RSPP, the Realtime Speech Pipeline Platform."""

from rspp._version import __version__
from rspp.errors import RSPPError
from rspp.runtime._context import NodeContext
from rspp.runtime._node import Node

__all__ = ["Node", "NodeContext", "RSPPError", "__version__"]
