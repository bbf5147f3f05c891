"""Small shared helpers: wall clock, canonical JSON and hashing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

Clock = Callable[[], int]


def wall_ms() -> int:
    """Milliseconds since the epoch (the default control-plane clock)."""
    return time.time_ns() // 1_000_000


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
