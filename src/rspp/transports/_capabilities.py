"""What each transport declares it supports, read by the plan resolver at turn start (F-161).

A live transport's capabilities change with its connection: a client that
reconnects may declare other sample rates or start echoing playback marks. The
snapshot of the connection in force when a turn opens is frozen in that turn's
plan; a change takes effect at the next turn boundary.
"""

from __future__ import annotations

from typing import Final, Literal

from rspp.contracts import TransportCapabilities

#: re-exported for the transports that store a snapshot
__all__ = ["TransportCapabilities", "live_capabilities", "loopback_capabilities"]

LiveKind = Literal["websocket", "telephony", "webrtc", "livekit"]

#: the codec on the client's wire per live transport kind
_CODECS: Final[dict[str, str]] = {
    "websocket": "pcm_s16le", "telephony": "mulaw", "webrtc": "opus", "livekit": "opus"}
#: the sample rates a client may declare (WebSocket ``start.sample_rate``)
_WS_RATES: Final = (16000, 24000, 48000)


def live_capabilities(transport: str, in_rate: int, out_rate: int,
                      marks: bool) -> TransportCapabilities:
    """One live connection's capabilities (its kind and declared audio)."""
    return TransportCapabilities(
        transport=transport, codec=_CODECS.get(transport, "pcm_s16le"),
        input_sample_rate_hz=in_rate, output_sample_rate_hz=out_rate,
        sample_rates=_WS_RATES if transport == "websocket" else tuple(sorted({in_rate,
                                                                              out_rate})),
        full_duplex=True, barge_in=True, playback_marks=marks)


def loopback_capabilities(in_rate: int, out_rate: int | None) -> TransportCapabilities:
    """The file transport (``rspp run``): the WAV's rate in; the reply's rate once known."""
    return TransportCapabilities(
        transport="loopback", codec="pcm_s16le", input_sample_rate_hz=in_rate,
        output_sample_rate_hz=out_rate, sample_rates=(in_rate,), full_duplex=True,
        barge_in=True, playback_marks=False)
