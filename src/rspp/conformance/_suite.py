"""Running a suite's checks for the categories a profile lists (F-164).

A suite is an ordered mapping of category name to an async check; a check passes by
returning a short note and fails by raising :class:`Violation` (what the subject did
wrong) or any other error (quoted). Categories the profile lists that the suite has no
check for, or that ``skip`` names, are left out of the results, so certification
reports them ``missing``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping

from rspp.conformance._profile import Profile
from rspp.conformance._report import CategoryResult, SuiteResults
from rspp.errors import RSPPError

__all__ = ["INTERRUPT", "QUESTION", "TURN_S", "Check", "Violation", "run_checks", "spoken"]

Check = Callable[[], Awaitable[str]]

#: what the transport and provider suites say to their subject, and the barge-in
QUESTION, INTERRUPT = "What is the weather like today?", "What is your name?"
#: generous bounds for a loaded machine: the contract is "answers", not "answers fast"
TURN_S = 90.0


async def spoken(text: str, sample_rate: int) -> bytes:
    """``text`` spoken by the offline TTS: 16-bit mono PCM at ``sample_rate``."""
    from rspp.providers.offline import EspeakTTS

    tts = EspeakTTS(sample_rate=sample_rate)
    return b"".join([c.pcm async for c in tts.synthesize(text)])


class Violation(RSPPError):
    """The subject broke a contract category (the message says how)."""


async def run_checks(profile: Profile, subject: str, checks: Mapping[str, Check],
                     skip: Iterable[str] = (), *, timeout_s: float = 120.0) -> SuiteResults:
    """Run the checks of ``profile``'s categories in the suite's order."""
    skipped = set(skip)
    wanted = {c.name for c in profile.categories}
    results: list[CategoryResult] = []
    for name, check in checks.items():
        if name not in wanted or name in skipped:
            continue
        try:
            async with asyncio.timeout(timeout_s):
                note = await check()
        except Violation as exc:
            results.append(CategoryResult(category=name, passed=False, detail=str(exc)))
        except TimeoutError:
            results.append(CategoryResult(category=name, passed=False,
                                          detail=f"no verdict within {timeout_s:g} s"))
        except Exception as exc:
            results.append(CategoryResult(category=name, passed=False,
                                          detail=f"{type(exc).__name__}: {exc}"))
        else:
            results.append(CategoryResult(category=name, passed=True, detail=note))
    return SuiteResults(target=profile.target, subject=subject, profile=profile.ref,
                        results=tuple(results))
