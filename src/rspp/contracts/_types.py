"""Constrained scalar aliases shared by every contract struct."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

NonEmptyStr = Annotated[str, Meta(min_length=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PosInt = Annotated[int, Meta(ge=1)]
SchemaVersion = Annotated[str, Meta(pattern=r"^v[0-9]+\.[0-9]+(?:\.[0-9]+)?$")]
Sha256Hex = Annotated[str, Meta(pattern=r"^[a-fA-F0-9]{64}$")]
RuleVersion = Annotated[str, Meta(pattern=r"^v?[0-9]+\.[0-9]+(?:\.[0-9]+)?$")]

#: The contract schema version this package writes.
SCHEMA_VERSION = "v1.0"
