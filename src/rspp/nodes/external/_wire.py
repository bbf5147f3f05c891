"""Runtime side of the external-node wire protocol (``rspp-external/1``, F-122).

Frames: a 4-byte big-endian length, then one MessagePack (default) or JSON map. The
child-side SDK (:mod:`rspp_external`) documents every message; here each message the
child sends is decoded into a typed struct at the edge and anything else is a protocol
error naming what was wrong.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import msgspec

from rspp.errors import RuntimeKernelError

__all__ = [
    "MAX_FRAME",
    "PROTOCOL",
    "ChildMessage",
    "Codec",
    "Done",
    "EmitMsg",
    "ErrorMsg",
    "ExternalProtocolError",
    "Ready",
    "SandboxReport",
    "WireCodec",
]

PROTOCOL = 1
MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")
Codec = Literal["msgpack", "json"]


class ExternalProtocolError(RuntimeKernelError):
    """The child broke the wire protocol (bad frame, unknown message, oversized frame)."""


class _Msg(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    pass


class Ready(_Msg, frozen=True, kw_only=True, tag="ready"):
    protocol: int


class EmitMsg(_Msg, frozen=True, kw_only=True, tag="emit"):
    call: int
    port: str | None = None
    kind: str | None = None
    payload: Any = None
    final: bool = False
    attrs: dict[str, Any] = {}


class Done(_Msg, frozen=True, kw_only=True, tag="done"):
    call: int
    cancelled: bool = False


class ErrorMsg(_Msg, frozen=True, kw_only=True, tag="error"):
    call: int
    message: str = ""
    #: the limit the call ran into (``memory_mb``: an allocation failed under RLIMIT_AS)
    limit: Literal["memory_mb", "cpu_seconds"] | None = None


class SandboxReport(_Msg, frozen=True, kw_only=True, tag="sandbox"):
    """Written by the trusted launcher before it executes the node: what it enforced."""

    enforced: dict[str, Any]


ChildMessage = Ready | EmitMsg | Done | ErrorMsg | SandboxReport


class WireCodec:
    """Encodes runtime messages and decodes child messages for one codec."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        if codec == "msgpack":
            self._enc: Any = msgspec.msgpack.Encoder()
            self._dec: Any = msgspec.msgpack.Decoder(ChildMessage)
        else:
            self._enc = msgspec.json.Encoder()
            self._dec = msgspec.json.Decoder(ChildMessage)

    def frame(self, msg: dict[str, Any]) -> bytes:
        body = self._enc.encode(msg)
        if len(body) > MAX_FRAME:
            raise ExternalProtocolError(
                f"a {msg.get('type')} frame of {len(body)} bytes exceeds {MAX_FRAME}; "
                "send smaller events to the external node")
        return bytes(_LEN.pack(len(body)) + body)

    @staticmethod
    def size(head: bytes) -> int:
        (n,) = _LEN.unpack(head)
        if n > MAX_FRAME:
            raise ExternalProtocolError(f"the child sent a frame of {n} bytes (max {MAX_FRAME})")
        return int(n)

    def decode(self, body: bytes) -> ChildMessage:
        try:
            return self._dec.decode(body)  # type: ignore[no-any-return]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ExternalProtocolError(f"the child sent an invalid message: {exc}") from None
