"""``rspp cp serve --slo FILE``: the availability SLO option, loaded and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def load_slo_option(path: Path | None) -> Any:
    """``rspp cp serve --slo FILE``: the validated config, or exit 2 naming the field."""
    if path is None:
        return None
    from rspp.controlplane._slo import SloConfigError, load_slo_config

    try:
        return load_slo_config(path)
    except SloConfigError as exc:
        typer.echo(f"error: --slo {exc}", err=True)
        raise typer.Exit(2) from None
