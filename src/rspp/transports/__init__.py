"""Transports: the transport contract and the loopback (WAV file) transport (F-130)."""

from rspp.transports._contract import PlaybackObserver, Transport
from rspp.transports._loopback import LoopbackOptions, LoopbackTransport, TurnOutput
from rspp.transports._wav import WavError, read_wav, write_wav

__all__ = [
    "LoopbackOptions",
    "LoopbackTransport",
    "PlaybackObserver",
    "Transport",
    "TurnOutput",
    "WavError",
    "read_wav",
    "write_wav",
]
