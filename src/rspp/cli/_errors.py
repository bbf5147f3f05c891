"""The CLI error boundary: bad input is one line on stderr and a non-zero exit.

Every command registered on the root app is wrapped by :func:`guarded`
(:func:`guard_commands` walks the app), so an :class:`~rspp.errors.RSPPError`
escaping a command prints ``FILE[:LINE]: field: message`` as a single line
and exits :data:`INPUT_ERROR`; nothing a user typed or pointed at produces a
traceback. Everything the CLI prints for an error passes through the secret
redactor (values of every resolved secret reference are scrubbed).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from rspp.errors import RSPPError

__all__ = ["INPUT_ERROR", "INTERRUPTED", "echo_error", "fail", "guard_commands", "guarded",
           "one_line", "scrub"]

INPUT_ERROR = 2
"""Exit status for bad input (a file, an option, a spec)."""

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

_F = TypeVar("_F", bound=Callable[..., Any])


def scrub(text: str) -> str:
    """``text`` with the value of every resolved secret replaced by ``[REDACTED]``.

    A secret is resolved only through ``rspp.providers._secrets``; a process that never
    imported it holds none, and skips importing the provider package (~0.35 s CPU) just
    to print an error line.
    """
    if "rspp.providers._secrets" not in sys.modules:
        return text
    from rspp.providers import redact

    return redact(text)


def one_line(text: str) -> str:
    """``text`` on one line: line breaks and indentation collapse to single spaces."""
    return " ".join(text.split())


def echo_error(message: str) -> None:
    """Print one scrubbed line on stderr."""
    typer.echo(scrub(one_line(message)), err=True)


def fail(message: str, code: int = INPUT_ERROR) -> typer.Exit:
    """Print ``message`` as one line on stderr; return the Exit to raise."""
    echo_error(message)
    return typer.Exit(code)


def guarded(func: _F) -> _F:
    """Wrap a command: an escaping :class:`RSPPError` becomes one line and exit 2."""
    if getattr(func, "__rspp_guarded__", False):
        return func

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RSPPError as exc:
            raise fail(str(exc)) from None

    wrapper.__rspp_guarded__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def guard_commands(app: typer.Typer) -> None:
    """Wrap every command of ``app`` and of its sub-apps with :func:`guarded`."""
    for info in app.registered_commands:
        if info.callback is not None:
            info.callback = guarded(info.callback)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            guard_commands(group.typer_instance)
