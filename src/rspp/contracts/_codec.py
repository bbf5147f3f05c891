"""JSON and MessagePack codecs for every contract kind (F-030).

JSON is the debug/recording encoding, MessagePack the compact binary one; a
transport negotiates one of the two by name (:data:`ENCODINGS`). Both round-trip
every kind losslessly. Encoder and decoder instances are built once and reused.

Decoding validates by default (every conditional rule, all issues with paths) and
raises :class:`ContractValidationError`; ``validate=False`` is the fast path that
only checks types and closed objects (msgspec) for trusted peers.

``canonical_json`` (sorted keys, no whitespace) and ``sha256_hex`` are the hashing
helpers for plan hashes and spec hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Final, Literal, TypeAlias

import msgspec

from rspp.contracts._validate import (
    KIND_TYPES,
    ContractStruct,
    ContractValidationError,
    _check_kind,
    _convert,
    _from_msgspec,
    check_versions,
    from_builtins,
)
from rspp.errors import ContractError

Encoding: TypeAlias = Literal["json", "msgpack"]

#: Encodings a transport may negotiate, preferred first.
ENCODINGS: Final[tuple[Encoding, ...]] = ("msgpack", "json")

_JSON_ENCODER: Final = msgspec.json.Encoder()
_CANONICAL_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()
_JSON_ANY: Final = msgspec.json.Decoder()
_MSGPACK_ANY: Final = msgspec.msgpack.Decoder()


@lru_cache(maxsize=16)
def _json_decoder(kind: str) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(KIND_TYPES[kind])


@lru_cache(maxsize=16)
def _msgpack_decoder(kind: str) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(KIND_TYPES[kind])


def negotiate_encoding(
    offered: Iterable[str], supported: Sequence[Encoding] = ENCODINGS
) -> Encoding:
    """Pick the encoding for a transport: our first preference the peer also offers.

    A debug client offers ``["json"]`` and gets JSON; a production client offering
    ``["msgpack", "json"]`` gets MessagePack. Raises :class:`ContractError` when
    nothing is shared.
    """
    wanted = [o.strip().lower() for o in offered]
    for encoding in supported:
        if encoding in wanted:
            return encoding
    msg = f"no shared encoding: peer offered {wanted}, we support {list(supported)}"
    raise ContractError(msg)


def encode_json(obj: object) -> bytes:
    """Compact JSON of a contract struct (or any msgspec-encodable value)."""
    return _JSON_ENCODER.encode(obj)


def encode_msgpack(obj: object) -> bytes:
    """MessagePack of a contract struct (or any msgspec-encodable value)."""
    return _MSGPACK_ENCODER.encode(obj)


def encode(obj: object, encoding: Encoding) -> bytes:
    """Encode with a negotiated encoding name."""
    if encoding == "json":
        return encode_json(obj)
    if encoding == "msgpack":
        return encode_msgpack(obj)
    msg = f"unknown encoding {encoding!r}; use one of: {', '.join(ENCODINGS)}"
    raise ContractError(msg)


def _decode(kind: str, data: bytes, encoding: Encoding, validate: bool) -> ContractStruct:
    _check_kind(kind)
    untyped = _JSON_ANY if encoding == "json" else _MSGPACK_ANY
    if validate or kind == "artifact_bundle":
        try:
            builtins = untyped.decode(data)
        except msgspec.DecodeError as exc:
            msg = f"malformed {encoding} for {kind}: {exc}"
            raise ContractError(msg) from exc
        if validate:
            return from_builtins(kind, builtins)
        converted = _convert(kind, builtins)
        check_versions(converted)
        return converted
    typed = _json_decoder(kind) if encoding == "json" else _msgpack_decoder(kind)
    try:
        result: ContractStruct = typed.decode(data)
    except msgspec.ValidationError as exc:
        raise ContractValidationError(kind, [_from_msgspec(exc)]) from exc
    except msgspec.DecodeError as exc:
        msg = f"malformed {encoding} for {kind}: {exc}"
        raise ContractError(msg) from exc
    check_versions(result)
    return result


def decode_json(kind: str, data: bytes, *, validate: bool = True) -> ContractStruct:
    """Decode JSON bytes as contract ``kind``; raises :class:`ContractError` naming the path."""
    return _decode(kind, data, "json", validate)


def decode_msgpack(kind: str, data: bytes, *, validate: bool = True) -> ContractStruct:
    """Decode MessagePack bytes as contract ``kind``; raises :class:`ContractError`."""
    return _decode(kind, data, "msgpack", validate)


def decode(kind: str, data: bytes, encoding: Encoding, *, validate: bool = True) -> ContractStruct:
    """Decode with a negotiated encoding name."""
    if encoding not in ENCODINGS:
        msg = f"unknown encoding {encoding!r}; use one of: {', '.join(ENCODINGS)}"
        raise ContractError(msg)
    return _decode(kind, data, encoding, validate)


def canonical_json(obj: object) -> bytes:
    """Canonical JSON: sorted keys at every level, no whitespace, UTF-8."""
    return _CANONICAL_ENCODER.encode(obj)


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()
