"""Shared helpers for benchmark scripts (each prints one JSON line last)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


def quick_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the ``--quick`` flag every benchmark takes."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 60 s)")
    return parser


async def run_all(
    runners: Sequence[Callable[[int, random.Random], Awaitable[None]]], turns: int, seed: int
) -> None:
    """Run every ``runner(turns, rng)`` concurrently, each with its own seeded RNG."""
    rng = random.Random(seed)
    gc.collect()
    async with asyncio.TaskGroup() as tg:
        for run in runners:
            tg.create_task(run(turns, random.Random(rng.random())))


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc, falling back to ru_maxrss)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100.0 * (len(s) - 1))))
    return s[k]


def emit(result: dict[str, Any]) -> None:
    """Print the final JSON line."""
    sys.stdout.write(json.dumps(result, sort_keys=False) + "\n")
    sys.stdout.flush()
