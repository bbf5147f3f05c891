"""Live progress of ``rspp run --real-time`` on a terminal (Rich): input position, turn
state and the transcript as it arrives. Nothing is drawn when stdout is not a terminal."""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rspp.runner import RunProgress

__all__ = ["LiveProgress"]


class LiveProgress:
    """A context manager; :meth:`update` takes each :class:`~rspp.runner.RunProgress`."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.enabled = self.console.is_terminal
        self._live: Live | None = None
        self.updates = 0

    def __enter__(self) -> LiveProgress:
        if self.enabled:
            self._live = Live(Text("starting the session..."), console=self.console,
                              refresh_per_second=10, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def update(self, p: RunProgress) -> None:
        self.updates += 1
        if self._live is not None:
            self._live.update(self.render(p))

    @staticmethod
    def render(p: RunProgress) -> Group:
        head = Table.grid(padding=(0, 1))
        head.add_row(Text("audio", style="bold"),
                     ProgressBar(total=max(p.total_s, 1e-3), completed=p.audio_s, width=30),
                     Text(f"{p.audio_s:4.1f}/{p.total_s:.1f} s"),
                     Text(p.state, style="bold cyan"), Text(f"turns: {p.turns}"))
        words = Table.grid(padding=(0, 1))
        words.add_row(Text("heard", style="bold"), Text(p.transcript or "...", style="green"))
        words.add_row(Text("reply", style="bold"), Text(p.reply or "...", style="magenta"))
        return Group(head, words)
