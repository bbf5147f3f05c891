"""Provider base classes: one attempt with timeout, cancel, metrics, normalised errors.

An adapter implements exactly one narrow hook and declares its
:class:`~rspp.providers.Capabilities`:

* :class:`LLMProvider` -> ``_generate(request, invocation)`` yields text deltas;
* :class:`STTProvider` -> ``_recognize(audio, invocation)`` yields transcripts;
* :class:`TTSProvider` -> ``_synthesize(text, invocation)`` yields audio chunks.

The base wraps the hook in a guarded stream that applies the timeout (idle
time without progress, on the injected clock), wakes at once on an explicit
cancel of the invocation's scope, closes the adapter's generator (which aborts
its HTTP request or WebSocket), normalises any failure into a
:class:`~rspp.providers.ProviderCallError` and reports metrics. Retries,
backoff, circuit breaking and fallback live one level up, in
:class:`~rspp.providers.InvocationController`.

Consume streams with ``contextlib.aclosing`` (or to exhaustion) so an early
exit closes the provider call deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rspp.contracts import ProviderCapabilities
from rspp.providers._clock import LoopClock
from rspp.providers._invocation import MetricsSink, ProviderInvocation
from rspp.providers._normalise import normalise_error
from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._types import (
    AudioChunk,
    Capabilities,
    LLMRequest,
    ProviderKind,
    Transcript,
)

if TYPE_CHECKING:
    from rspp.kernel._handles import CancelToken, Clock

__all__ = ["LLMProvider", "Provider", "STTProvider", "TTSProvider"]

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741


class _Watch:
    """Timeout bookkeeping shared by the guard and the input wrapper.

    Provider timeouts guard real network I/O, so idle time is measured on the
    event loop's timer; metrics and backoff use the injected clock (a virtual
    clock that jumps ahead while a socket is pending would fire every timeout).
    """

    __slots__ = ("activity_s", "armed", "wake")

    def __init__(self, armed: bool) -> None:
        self.activity_s = 0.0  # set when the guarded stream starts
        self.armed = armed
        self.wake = asyncio.Event()


class Provider(ABC):
    """Common machinery of every adapter (one attempt = one invocation)."""

    kind: ClassVar[ProviderKind]
    capabilities: ClassVar[Capabilities]
    #: default idle timeout of one attempt when the caller gives none
    default_timeout_ms: ClassVar[int | None] = 10_000

    def __init__(
        self,
        provider_id: str,
        *,
        clock: Clock | None = None,
        metrics: MetricsSink | None = None,
    ) -> None:
        self.provider_id = provider_id
        self.clock: Clock = clock or LoopClock()
        self.metrics = metrics

    def new_invocation(
        self,
        *,
        parent: CancelToken | None = None,
        attempt: int = 1,
        invocation_id: str | None = None,
    ) -> ProviderInvocation:
        from rspp.providers._invocation import InvocationCancelScope

        inv = ProviderInvocation(
            provider_id=self.provider_id,
            kind=self.kind,
            attempt=attempt,
            cancel_scope=InvocationCancelScope(parent),
        )
        if invocation_id is not None:
            inv.invocation_id = invocation_id
        return inv

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release pooled connections/models (optional)."""

    @classmethod
    def check_config(cls, params: Mapping[str, object], where: str) -> None:
        """Check structured options (mappings) before construction; raise a
        :class:`~rspp.providers.PolicyError` naming ``where`` and the field (optional hook:
        ``rspp lint`` and session start both call it)."""
        del params, where  # nothing to check by default

    def __repr__(self) -> str:
        return f"{type(self).__name__}(provider_id={self.provider_id!r})"

    def capability_snapshot(self) -> ProviderCapabilities:
        """What this instance supports now (F-161): the declared capabilities, with the
        configured voice first among the voices."""
        cap = self.capabilities
        voice = getattr(self, "voice", None) or getattr(self, "voice_id", None)
        voices = cap.voices
        if isinstance(voice, str) and voice:
            voices = (voice, *(v for v in voices if v != voice))
        return ProviderCapabilities(
            provider_id=self.provider_id, kind=self.kind.value, streaming=cap.streaming,
            languages=cap.languages, voices=voices, sample_rates=cap.sample_rates,
            max_input_chars=cap.max_input_chars, incremental_input=cap.incremental_input,
            interim_results=cap.interim_results, offline=cap.offline)

    # -- the guard --------------------------------------------------------
    def _count_input(
        self,
        source: AsyncIterable[I],
        inv: ProviderInvocation,
        watch: _Watch,
        size_of: Callable[[I], int],
        *,
        arm_on_end: bool,
    ) -> AsyncIterator[I]:
        async def gen() -> AsyncIterator[I]:
            async for item in source:
                inv.metrics.items_in += 1
                inv.metrics.bytes_in += size_of(item)
                watch.activity_s = asyncio.get_running_loop().time()
                yield item
            watch.activity_s = asyncio.get_running_loop().time()
            if arm_on_end:
                watch.armed = True
                watch.wake.set()

        return gen()

    async def _guard(
        self,
        source: AsyncIterator[T],
        inv: ProviderInvocation,
        watch: _Watch,
        *,
        timeout_ms: int | None,
        size_of: Callable[[T], int],
    ) -> AsyncIterator[T]:
        clock = self.clock
        metrics = inv.metrics
        timeout_s = None if timeout_ms is None else timeout_ms / 1000
        loop = asyncio.get_running_loop()
        watch.activity_s = loop.time()
        cancel_task: asyncio.Future[None] = asyncio.ensure_future(inv.cancel_scope.wait())
        next_task: asyncio.Future[T] | None = None

        async def pull() -> T:
            return await source.__anext__()

        try:
            while True:
                if inv.cancel_scope.cancelled:
                    inv.outcome = Outcome.CANCELLED
                    return
                next_task = asyncio.ensure_future(pull())
                # the pull may end (StopAsyncIteration) after this stream stopped waiting for
                # it (cancelled twice, closed): its outcome is always consumed
                next_task.add_done_callback(_consume_outcome)
                while True:
                    waiters: set[asyncio.Future[Any]] = {next_task, cancel_task}
                    wake: asyncio.Future[Any] | None = None
                    remaining: float | None = None
                    if timeout_s is not None and watch.armed:
                        # judged only after a wait: the pull runs (its first step at least)
                        # before the timeout can end it, and an item that is ready counts
                        # (a process descheduled for the whole timeout between the pull's
                        # start and this line timed out an attempt that never ran)
                        remaining = max(0.0, timeout_s - (loop.time() - watch.activity_s))
                    elif timeout_s is not None:
                        watch.wake.clear()
                        wake = asyncio.ensure_future(watch.wake.wait())
                        waiters.add(wake)
                    try:
                        done, _ = await asyncio.wait(
                            waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                        )
                    finally:
                        if wake is not None and not wake.done():
                            wake.cancel()
                    if next_task in done:
                        break
                    if cancel_task in done:
                        inv.outcome = Outcome.CANCELLED
                        return
                    if (timeout_s is not None and watch.armed
                            and loop.time() - watch.activity_s >= timeout_s):
                        raise ProviderCallError(
                            f"no progress for {timeout_ms} ms",
                            outcome=Outcome.TIMEOUT,
                            provider=self.provider_id,
                            code="timeout",
                        )
                    # timer fired early or input ended: loop re-checks idle time
                try:
                    item = next_task.result()
                except StopAsyncIteration:
                    inv.outcome = Outcome.SUCCESS
                    return
                finally:
                    next_task = None
                watch.activity_s = loop.time()
                now = clock.monotonic_ns()
                if metrics.first_output_ns is None:
                    metrics.first_output_ns = now
                metrics.items_out += 1
                metrics.bytes_out += size_of(item)
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            if inv.outcome is None:
                inv.outcome = Outcome.SUCCESS if inv.truncated else Outcome.CANCELLED
            raise
        except Exception as exc:
            error = normalise_error(exc, self.provider_id)
            inv.outcome = error.outcome
            inv.error_code = metrics.error_code = error.code or error.outcome.value
            if error is exc:
                raise
            raise error from None
        finally:
            cancel_task.cancel()
            if next_task is not None and not next_task.done():
                next_task.cancel()
                # asyncio.wait never raises the child's exception but still lets a
                # cancellation of this task propagate (CancelledError is never swallowed)
                await asyncio.wait({next_task})
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            metrics.ended_ns = clock.monotonic_ns()
            if inv.outcome is None:
                inv.outcome = Outcome.CANCELLED
            if self.metrics is not None:
                self.metrics.record(inv)

    def _open_invocation(
        self, inv: ProviderInvocation | None, *, armed: bool
    ) -> tuple[ProviderInvocation, _Watch]:
        inv = inv or self.new_invocation()
        inv.metrics.started_ns = self.clock.monotonic_ns()
        return inv, _Watch(armed)

    def _attempt_timeout(self, timeout_ms: int | None) -> int | None:
        return self.default_timeout_ms if timeout_ms is None else timeout_ms


class LLMProvider(Provider):
    """Streaming text generation with conversation context (F-063)."""

    kind = ProviderKind.LLM

    def stream(
        self,
        request: LLMRequest,
        *,
        invocation: ProviderInvocation | None = None,
        timeout_ms: int | None = None,
    ) -> AsyncIterator[str]:
        """Stream text deltas of the reply."""
        inv, watch = self._open_invocation(invocation, armed=True)
        inv.timeout_ms = self._attempt_timeout(timeout_ms)
        inv.metrics.items_in = len(request.messages)
        inv.metrics.bytes_in = sum(len(m.content.encode()) for m in request.messages)
        return self._guard(
            self._generate(request, inv),
            inv,
            watch,
            timeout_ms=self._attempt_timeout(timeout_ms),
            size_of=lambda s: len(s.encode()),
        )

    @abstractmethod
    def _generate(self, request: LLMRequest, invocation: ProviderInvocation) -> AsyncIterator[str]:
        """Adapter hook: yield text deltas."""


class STTProvider(Provider):
    """Streaming recognition: audio in, partial and final transcripts out."""

    kind = ProviderKind.STT

    def stream(
        self,
        audio: AsyncIterable[AudioChunk],
        *,
        invocation: ProviderInvocation | None = None,
        timeout_ms: int | None = None,
    ) -> AsyncIterator[Transcript]:
        """Stream transcripts; the timeout counts only after the audio input ended."""
        inv, watch = self._open_invocation(invocation, armed=False)
        counted = self._count_input(audio, inv, watch, lambda c: len(c.pcm), arm_on_end=True)
        return self._guard(
            self._recognize(counted, inv),
            inv,
            watch,
            timeout_ms=self._attempt_timeout(timeout_ms),
            size_of=lambda t: len(t.text.encode()),
        )

    @abstractmethod
    def _recognize(
        self, audio: AsyncIterator[AudioChunk], invocation: ProviderInvocation
    ) -> AsyncIterator[Transcript]:
        """Adapter hook: consume audio, yield transcripts."""


class TTSProvider(Provider):
    """Streaming synthesis: text (possibly still being generated) in, audio out (F-064)."""

    kind = ProviderKind.TTS

    def stream(
        self,
        text: AsyncIterable[str],
        *,
        invocation: ProviderInvocation | None = None,
        timeout_ms: int | None = None,
    ) -> AsyncIterator[AudioChunk]:
        """Stream audio; input activity counts as progress for the idle timeout."""
        inv, watch = self._open_invocation(invocation, armed=True)
        counted = self._count_input(text, inv, watch, len, arm_on_end=False)
        return self._guard(
            self._synthesize(counted, inv),
            inv,
            watch,
            timeout_ms=self._attempt_timeout(timeout_ms),
            size_of=lambda c: len(c.pcm),
        )

    def synthesize(self, text: str, **kwargs: object) -> AsyncIterator[AudioChunk]:
        """Convenience: synthesise one complete text."""

        async def one() -> AsyncIterator[str]:
            yield text

        return self.stream(one(), **kwargs)  # type: ignore[arg-type]

    @abstractmethod
    def _synthesize(
        self, text: AsyncIterator[str], invocation: ProviderInvocation
    ) -> AsyncIterator[AudioChunk]:
        """Adapter hook: consume text deltas, yield audio chunks."""


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    """Mark a finished pull's exception retrieved (it is handled or deliberately dropped)."""
    if not task.cancelled():
        task.exception()
