"""RSPP, the Realtime Speech Pipeline Platform.

The names a custom node needs: :class:`Node`, :class:`Event`, :class:`NodeContext`
and :func:`param` (declared, linted parameters).
"""

from rspp._version import __version__
from rspp.errors import RSPPError
from rspp.runtime._context import NodeContext
from rspp.runtime._events import Event
from rspp.runtime._node import Node
from rspp.spec import ParamSpec, param

__all__ = ["Event", "Node", "NodeContext", "ParamSpec", "RSPPError", "__version__", "param"]
