"""RSPP, the Realtime Speech Pipeline Platform."""

from rspp._version import __version__
from rspp.errors import RSPPError

__all__ = ["RSPPError", "__version__"]
