"""RSPP, the Realtime Speech Pipeline Platform.

The names a custom node needs: :class:`Node`, :class:`Event`, :class:`NodeContext`
and :func:`param` (declared, linted parameters).

They load on first use (PEP 562): importing a leaf such as ``rspp.cli`` or
``rspp.errors`` must not pay for the kernel, the contracts and the spec loader
(every ``rspp`` command starts by importing this package).
"""

from __future__ import annotations

import typing

from rspp import _lazy
from rspp._version import __version__
from rspp.errors import RSPPError

if typing.TYPE_CHECKING:
    from rspp.kernel._events import Event
    from rspp.kernel._node import Node, NodeContext
    from rspp.spec import ParamSpec, param

__all__ = ["Event", "Node", "NodeContext", "ParamSpec", "RSPPError", "__version__", "param"]

_LAZY = {
    "Event": "rspp.kernel._events",
    "Node": "rspp.kernel._node",
    "NodeContext": "rspp.kernel._node",
    "ParamSpec": "rspp.spec",
    "param": "rspp.spec",
}


__getattr__, __dir__ = _lazy.lazy_names(__name__, _LAZY, globals())
