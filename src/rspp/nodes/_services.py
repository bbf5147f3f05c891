"""What built-in nodes need from their session beyond the Node API: providers and turn hooks.

Nodes are constructed by the kernel with ``(ctx, params)`` only; the local runner
(or a server, or the replay rig's session factory) builds the session with its
:class:`NodeServices` (``SessionActor(services=...)``) and a node reads them with
:func:`services_of` (``ctx.services``). A session built without services gives its
nodes :func:`default_services`: the offline adapters (pocketsphinx, the local
responder, espeak-ng) and no turn hooks, so the built-in nodes also run inside a
bare ``SessionActor``. There is no process-wide registry: two sessions in one
process each see their own services.

:class:`TurnHooks` is the narrow interface of the turn driver the nodes call
(VAD end of utterance, speech start for barge-in, waiting for the turn a final
transcript belongs to, text-only degrade).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rspp.contracts import ControlSignal
from rspp.kernel import Clock, NodeContext, StateHandle
from rspp.providers import (
    ADAPTERS,
    CircuitRegistry,
    CostMeter,
    HttpClientPool,
    InvocationContext,
    InvocationController,
    InvocationPolicy,
    LLMController,
    LLMProvider,
    PolicyError,
    Provider,
    ProviderBatcher,
    ProviderKind,
    StickyChoice,
    STTController,
    STTProvider,
    TTSController,
    TTSProvider,
    adapter_info,
    create_provider,
)

__all__ = [
    "NodeServices",
    "TurnHooks",
    "build_provider",
    "default_services",
    "services_of",
]


class TurnHooks(Protocol):
    """The turn driver as seen by nodes (all calls are cheap and never block)."""

    def speech_started(self, sample_index: int | None) -> None: ...

    def end_of_utterance(self, reason: str) -> None: ...

    async def turn_for_utterance(self) -> str | None: ...

    def degraded(self, turn_id: str | None, reason: str) -> None: ...

    def turn_failed(self, turn_id: str, reason: str) -> None: ...

    def node_audit(self, node_id: str, turn_id: str | None, reason: str) -> None: ...


def build_provider(
    provider_id: str, config: Mapping[str, Any] | None = None, *, modality: str | None = None,
    http_pool: HttpClientPool | None = None, batcher: ProviderBatcher | None = None,
) -> Provider:
    """Instantiate the adapter for ``provider_id`` (config key ``adapter`` overrides the id).

    Adapters are looked up in :data:`rspp.providers.ADAPTERS`; an unknown name, option
    or a missing API key raises an :class:`~rspp.errors.RSPPError` naming it.
    ``http_pool``: the runtime's shared provider connections (F-105); ``batcher``: the
    runtime's dynamic batching of compatible calls (F-051).
    """
    cfg = dict(config or {})
    adapter = str(cfg.pop("adapter", provider_id))
    info = adapter_info(adapter)
    if info is None or (modality is not None and info.kind.value != modality):
        kinds = [k for k in ProviderKind if modality is None or k.value == modality]
        known = sorted(a.name for a in ADAPTERS if a.kind in kinds)
        where = f"providers.{modality}" if modality else "providers"
        raise PolicyError(
            f"{where}: provider {provider_id!r}: unknown adapter {adapter!r}; use one of "
            f"{known} (or name the adapter in providers.<modality>.config.adapter)"
        )
    return create_provider(info.kind, {"type": adapter, **cfg}, provider_id=provider_id,
                           path=f"providers.{info.kind.value}", http_pool=http_pool,
                           batcher=batcher)


@dataclass(slots=True)
class LiveTranscript:
    """What the STT node has recognised of the utterance in progress (for endpointing).

    ``decoded_until`` is the input sample index the recogniser has certainly decoded
    (audio pulled by the provider minus one decoding batch); ``text`` is its latest
    hypothesis for the utterance ``utterance`` (empty between utterances).
    """

    utterance: int = 0
    text: str = ""
    decoded_until: int = -1


@dataclass(slots=True)
class NodeServices:
    """Providers by id, the provider chain per modality, signal sink and turn hooks."""

    providers: dict[str, Provider]
    chains: dict[str, tuple[str, ...]]
    session_id: str = "local"
    pipeline_version: str = "local@0"
    signal_sink: Callable[[ControlSignal], None] | None = None
    hooks: TurnHooks | None = None
    next_sequence: Callable[[], int] | None = None
    authority_epoch: int = 0
    timeouts_ms: dict[str, int] = field(default_factory=dict)
    #: remaining budget of a turn in ms (``None``: not enforced); bounds retries (F-059)
    remaining_budget_ms: Callable[[str], int | None] | None = None
    max_retries: int = 1
    #: per-modality policy templates (retry, backoff, circuit) from the spec (F-057, F-059)
    policies: dict[str, InvocationPolicy] = field(default_factory=dict)
    #: the runtime's circuit breakers, shared by every session of the runtime (F-057)
    circuits: CircuitRegistry = field(default_factory=CircuitRegistry)
    #: set by a ``turn_detector`` node: it, not the VAD, proposes turns
    turn_detector_present: bool = False
    #: controllers created per turn (OR-02 provider invocation outcomes)
    controllers: list[tuple[str | None, InvocationController[Any]]] = field(default_factory=list)
    #: the session's time base, so provider signals share the session's timestamps
    clock: Clock | None = None
    #: called with ``(turn_id, controller)`` for every controller created (telemetry)
    on_controller: Callable[[str | None, InvocationController[Any]], None] | None = None
    #: the STT node's view of the utterance in progress (read by adaptive endpointing)
    live_transcript: LiveTranscript = field(default_factory=LiveTranscript)
    #: a node's session-hot state whatever its own scope (F-155): checkpointed at turn
    #: boundaries and restored after failover (the LLM node's conversation); None: the
    #: node keeps it in process memory only
    session_state: Callable[[str], StateHandle] | None = None
    #: counts the session's provider usage (tokens, audio seconds, characters) for its
    #: summary and cost caps (F-075); None: not counted
    meter: CostMeter | None = None
    #: per modality, the provider a sticky fallback keeps the session on (F-047): shared by
    #: the session's controllers, so a fallback that answered serves the later segments
    sticky: dict[str, StickyChoice] = field(default_factory=dict)

    def _policy(self, modality: str, turn_id: str | None) -> InvocationPolicy:
        chain = self.chains.get(modality)
        if not chain:
            raise KeyError(
                f"no {modality} provider configured; add providers.{modality}.primary to the spec"
            )
        base = self.policies.get(modality) or InvocationPolicy(
            providers=chain, timeout_ms=self.timeouts_ms.get(modality, 30_000),
            max_retries=self.max_retries)
        budget = self.remaining_budget_ms
        return replace(base, providers=chain, remaining_budget_ms=(
            None if budget is None or turn_id is None else lambda: budget(turn_id)))

    def _context(self, node_id: str, turn_id: str | None) -> InvocationContext:
        return InvocationContext(
            session_id=self.session_id, pipeline_version=self.pipeline_version,
            authority_epoch=self.authority_epoch, turn_id=turn_id, node_id=node_id,
            next_sequence=self.next_sequence,
            **({"clock": self.clock} if self.clock is not None else {}),
        )

    def _subset(self, modality: str, kind: type[Provider]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for pid in self.chains.get(modality, ()):
            p = self.providers.get(pid)
            if p is None:
                p = self.providers[pid] = build_provider(pid, modality=modality)
            if not isinstance(p, kind):
                raise TypeError(f"provider {pid!r} is not a {modality} adapter")
            out[pid] = p
        return out

    def _keep(self, turn_id: str | None, ctl: InvocationController[Any]) -> None:
        if self.on_controller is not None:
            self.on_controller(turn_id, ctl)
        if turn_id is not None:
            self.controllers.append((turn_id, ctl))
            del self.controllers[:-256]

    def stt(self, node_id: str, turn_id: str | None) -> STTController:
        ctl = STTController(self._subset("stt", STTProvider), self._policy("stt", turn_id),
                            self._context(node_id, turn_id), sink=self.signal_sink,
                            circuits=self.circuits, meter=self.meter,
                            sticky=self.sticky.setdefault("stt", StickyChoice()))
        self._keep(turn_id, ctl)
        return ctl

    def llm(self, node_id: str, turn_id: str | None) -> LLMController:
        ctl = LLMController(self._subset("llm", LLMProvider), self._policy("llm", turn_id),
                            self._context(node_id, turn_id), sink=self.signal_sink,
                            circuits=self.circuits, meter=self.meter,
                            sticky=self.sticky.setdefault("llm", StickyChoice()))
        self._keep(turn_id, ctl)
        return ctl

    def tts(self, node_id: str, turn_id: str | None) -> TTSController:
        ctl = TTSController(self._subset("tts", TTSProvider), self._policy("tts", turn_id),
                            self._context(node_id, turn_id), sink=self.signal_sink,
                            circuits=self.circuits, meter=self.meter,
                            sticky=self.sticky.setdefault("tts", StickyChoice()))
        self._keep(turn_id, ctl)
        return ctl

    def adopt(self, turn_id: str, ctl: object) -> None:
        """Count a controller opened before its turn (the utterance's STT) as the turn's:
        its invocations join the turn's OR-02 ``provider_invocations`` (F-160)."""
        if isinstance(ctl, InvocationController) and not any(
                c is ctl for _, c in self.controllers):
            self.controllers.append((turn_id, ctl))
            del self.controllers[:-256]

    def in_flight(self, turn_id: str, node_id: str) -> tuple[str, ...]:
        """Ids of the turn's invocations by ``node_id`` that have not ended yet."""
        return tuple(inv.invocation_id for tid, ctl in self.controllers
                     if tid == turn_id and ctl.context.node_id == node_id
                     for inv in ctl.invocations if inv.outcome is None)

    def invocation_outcomes(self, turn_id: str) -> tuple[dict[str, object], ...]:
        """OR-02 ``provider_invocations`` of one turn (finished attempts, in call order)."""
        out: list[dict[str, object]] = []
        for tid, ctl in self.controllers:
            if tid != turn_id:
                continue
            for inv in ctl.invocations:
                row: dict[str, object] = {
                    "provider_invocation_id": inv.invocation_id, "modality": inv.kind.value,
                    "provider_id": inv.provider_id, "node_id": ctl.context.node_id,
                    "outcome": inv.outcome.value if inv.outcome is not None else "cancelled",
                    "attempts": inv.attempt,
                }
                if inv.metrics.latency_ms is not None:
                    row["latency_ms"] = int(inv.metrics.latency_ms)
                out.append(row)
        return tuple(out)


_DEFAULT: NodeServices | None = None


def default_services() -> NodeServices:
    """Offline adapters, no hooks (for a session built without services)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = NodeServices(
            providers={},
            chains={"stt": ("pocketsphinx",), "llm": ("local",), "tts": ("espeak",)},
        )
    return _DEFAULT


def services_of(ctx: NodeContext) -> NodeServices:
    """The services the node's session was built with, else :func:`default_services`."""
    svc = ctx.services
    if svc is None:
        return default_services()
    if not isinstance(svc, NodeServices):
        raise TypeError(
            f"session {ctx.session_id!r} was built with services of type {type(svc).__name__}; "
            "built-in nodes need rspp.nodes.NodeServices"
        )
    return svc
