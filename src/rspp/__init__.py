"""RSPP, the Realtime Speech Pipeline Platform.

The names a custom node needs: :class:`Node`, :class:`Event`, :class:`NodeContext`
and :func:`param` (declared, linted parameters).
"""

from rspp._version import __version__
from rspp.errors import RSPPError
from rspp.kernel._events import Event
from rspp.kernel._node import Node, NodeContext
from rspp.spec import ParamSpec, param

__all__ = ["Event", "Node", "NodeContext", "ParamSpec", "RSPPError", "__version__", "param"]
