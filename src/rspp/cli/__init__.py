"""The ``rspp`` command line."""

from rspp.cli._app import app, main

__all__ = ["app", "main"]
