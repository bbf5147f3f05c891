"""Cost caps and per-session usage summaries (F-058, F-075, NF-017).

Units: LLM tokens are counted per streamed delta (adapters stream about one
token per delta); STT is seconds of audio sent; TTS is characters sent.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated

import msgspec

from rspp.providers._outcome import Outcome, ProviderCallError
from rspp.providers._policy import CostCaps, PriceTable

__all__ = ["CostCapExceeded", "CostMeter", "ProviderUsage", "UsageKind", "UsageSummary"]


class UsageKind(StrEnum):
    LLM_TOKENS = "llm_tokens"
    STT_AUDIO_SECONDS = "stt_audio_seconds"
    TTS_CHARS = "tts_chars"


class CostCapExceeded(ProviderCallError):
    """A cost cap refused the call before it reached a provider (outcome ``policy_block``)."""

    def __init__(self, message: str, *, provider: str = "cost_meter") -> None:
        super().__init__(message, outcome=Outcome.POLICY_BLOCK, provider=provider, code="cost_cap")


#: bounds a summary travels within (a runtime reports it to the control plane)
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                  pattern=r"^[A-Za-z0-9_][A-Za-z0-9._:@+-]*$")]
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
_Amount = Annotated[float, msgspec.Meta(ge=0, le=1e12)]


class ProviderUsage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    llm_tokens: _Count = 0
    stt_audio_seconds: _Amount = 0.0
    tts_characters: _Count = 0
    estimated_cost_usd: _Amount = 0.0


class UsageSummary(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Exportable per-session summary (JSON via ``msgspec.json.encode``)."""

    session_id: _Id
    tenant_id: _Id | None
    turns: _Count
    llm_tokens: _Count
    stt_audio_seconds: _Amount
    tts_characters: _Count
    estimated_cost_usd: _Amount
    cap_enforcements: _Count
    by_provider: Annotated[dict[_Id, ProviderUsage], msgspec.Meta(max_length=64)]


_CAP_FIELDS = {
    UsageKind.LLM_TOKENS: ("llm_tokens_per_turn", "llm_tokens_per_session"),
    UsageKind.STT_AUDIO_SECONDS: ("stt_audio_seconds_per_turn", "stt_audio_seconds_per_session"),
    UsageKind.TTS_CHARS: ("tts_chars_per_turn", "tts_chars_per_session"),
}


class CostMeter:
    """Counts usage per turn and session and answers "how much may I still spend"."""

    def __init__(
        self,
        session_id: str,
        caps: CostCaps | None = None,
        prices: PriceTable | None = None,
        *,
        tenant_id: str | None = None,
    ) -> None:
        self.session_id = session_id
        self.tenant_id = tenant_id
        self.caps = caps or CostCaps()
        self.prices = prices or PriceTable()
        self.turns = 0
        self.cap_enforcements = 0
        self._turn: dict[UsageKind, float] = dict.fromkeys(UsageKind, 0.0)
        self._session: dict[UsageKind, float] = dict.fromkeys(UsageKind, 0.0)
        self._by_provider: dict[str, dict[UsageKind, float]] = {}
        #: told of every charge (the runtime's per-tenant token quota, F-050)
        self.on_charge: Callable[[UsageKind, float], None] | None = None

    def begin_turn(self) -> None:
        self.turns += 1
        self._turn = dict.fromkeys(UsageKind, 0.0)

    def allowance(self, kind: UsageKind) -> float | None:
        """Remaining amount before the tighter of the turn/session caps; None = uncapped."""
        turn_field, session_field = _CAP_FIELDS[kind]
        limits = []
        turn_cap = getattr(self.caps, turn_field)
        session_cap = getattr(self.caps, session_field)
        if turn_cap is not None:
            limits.append(turn_cap - self._turn[kind])
        if session_cap is not None:
            limits.append(session_cap - self._session[kind])
        return max(0.0, min(limits)) if limits else None

    def cap_reason(self, kind: UsageKind, action: str) -> str:
        turn_field, session_field = _CAP_FIELDS[kind]
        return (
            f"cost_cap {kind.value} action={action} used_turn={self._turn[kind]:g} "
            f"used_session={self._session[kind]:g} {turn_field}={getattr(self.caps, turn_field)} "
            f"{session_field}={getattr(self.caps, session_field)}"
        )

    def charge(self, kind: UsageKind, provider_id: str, amount: float) -> None:
        self._turn[kind] += amount
        self._session[kind] += amount
        per = self._by_provider.setdefault(provider_id, dict.fromkeys(UsageKind, 0.0))
        per[kind] += amount
        if self.on_charge is not None:
            self.on_charge(kind, amount)

    def _cost(self, provider_id: str, usage: dict[UsageKind, float]) -> float:
        p = self.prices
        return (
            usage[UsageKind.LLM_TOKENS] / 1000 * p.per_1k_llm_tokens.get(provider_id, 0.0)
            + usage[UsageKind.STT_AUDIO_SECONDS] / 60 * p.per_stt_audio_minute.get(provider_id, 0.0)
            + usage[UsageKind.TTS_CHARS] / 1000 * p.per_1k_tts_chars.get(provider_id, 0.0)
        )

    def summary(self) -> UsageSummary:
        by_provider = {
            pid: ProviderUsage(
                llm_tokens=int(u[UsageKind.LLM_TOKENS]),
                stt_audio_seconds=round(u[UsageKind.STT_AUDIO_SECONDS], 3),
                tts_characters=int(u[UsageKind.TTS_CHARS]),
                estimated_cost_usd=round(self._cost(pid, u), 6),
            )
            for pid, u in sorted(self._by_provider.items())
        }
        return UsageSummary(
            session_id=self.session_id,
            tenant_id=self.tenant_id,
            turns=self.turns,
            llm_tokens=int(self._session[UsageKind.LLM_TOKENS]),
            stt_audio_seconds=round(self._session[UsageKind.STT_AUDIO_SECONDS], 3),
            tts_characters=int(self._session[UsageKind.TTS_CHARS]),
            estimated_cost_usd=round(sum(u.estimated_cost_usd for u in by_provider.values()), 6),
            cap_enforcements=self.cap_enforcements,
            by_provider=by_provider,
        )
