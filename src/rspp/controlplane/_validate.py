"""The one validation layer between the wire and the store.

``decode_body`` turns raw bytes into the route's typed request, or raises
:class:`InvalidRequest` naming the field: malformed JSON and invalid UTF-8 (400),
values outside their declared bounds (422), and, inside free-form JSON values
(config bodies), NUL bytes, lone surrogates, integers beyond 64 bits and nesting
deeper than :data:`MAX_JSON_DEPTH`. ``check_spec_shape`` bounds a YAML/JSON spec's
nesting before any parser sees it.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from rspp.controlplane._errors import BodyTooLarge, InvalidRequest, MalformedBody

T = TypeVar("T")

MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def field_from(message: str) -> str:
    """Field path from a msgspec message ("... field `x`" and/or "at `$.a.b`")."""
    named = re.search(r"field `([^`]+)`", message)
    at = re.search(r"at `\$\.?([^`]*)`", message)
    parts = [p for p in ((at.group(1) if at else ""), (named.group(1) if named else "")) if p]
    return ".".join(parts) or "body"


def decode_body(raw: bytes, kind: type[T]) -> T:
    try:
        value = msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "got `float`" not in text:
            raise InvalidRequest(f"invalid request body: {text}", field=field_from(text)) from None
        value = _decode_integral_floats(raw, kind)
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"request body is not valid JSON: {exc}", field="body") from None
    except UnicodeDecodeError as exc:
        raise MalformedBody(
            f"request body is not valid UTF-8 (byte {exc.start})", field="body"
        ) from None
    except RecursionError:
        raise InvalidRequest(
            f"request body nests deeper than {MAX_JSON_DEPTH} levels", field="body"
        ) from None
    check_value(msgspec.structs.asdict(value) if isinstance(value, msgspec.Struct) else value)
    return value


def _decode_integral_floats(raw: bytes, kind: type[T]) -> T:
    """JSON Schema's ``integer`` includes ``3.0``: accept integral floats for int fields."""
    try:
        value = msgspec.convert(_integral(msgspec.json.decode(raw)), kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise InvalidRequest(f"invalid request body: {text}", field=field_from(text)) from None
    return value


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def decode_params(values: dict[str, str], kind: type[T], where: str) -> T:
    """Path or query parameters (strings) into their typed struct."""
    try:
        decoded = msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = field_from(text)
        raise InvalidRequest(f"invalid {where} parameter: {text}", field=field) from None
    for name in values:
        # lax decoding turns the text "null" into None: a parameter that is given is never
        # "absent" (`?lease_epoch=null` is no epoch, not a missing one)
        if getattr(decoded, name, ...) is None:
            raise InvalidRequest(f"invalid {where} parameter: {name} must be a value, not "
                                 f"{values[name]!r}", field=name)
    return decoded


def check_value(value: Any, path: str = "", depth: int = 0) -> None:
    """Walk a decoded value; refuse what no store column or consumer can hold."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidRequest(
            f"value nests deeper than {MAX_JSON_DEPTH} levels", field=path or "body"
        )
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, bool) or value is None or isinstance(value, float):
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidRequest("integer does not fit in 64 bits", field=path or "body")
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            _check_text(name, f"{path}.{name}" if path else name)
            check_value(item, f"{path}.{name}" if path else name, depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_value(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, msgspec.Struct):
        check_value(msgspec.structs.asdict(value), path, depth + 1)


def _check_text(text: str, field: str) -> None:
    if "\x00" in text:
        raise InvalidRequest("text must not contain NUL bytes", field=field or "body")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "text contains a lone surrogate (not valid Unicode)", field=field or "body"
        ) from None


def check_spec_shape(text: str, *, max_bytes: int, max_depth: int, field: str) -> None:
    """Size and nesting bounds of a YAML/JSON document, checked without parsing it.

    Nesting is the indentation stack of block YAML plus open ``[``/``{`` of flow
    style plus ``- `` sequence markers: linear in the text, so a 5000-deep document
    is refused in microseconds instead of blocking a parser.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise BodyTooLarge(
            f"document is {size} bytes; the limit is {max_bytes} bytes", field=field
        )
    indents: list[int] = []
    flow = 0
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while indents and indents[-1] > indent:
            indents.pop()
        if not indents or indents[-1] < indent:
            indents.append(indent)
        dashes = 0
        rest = stripped
        while rest.startswith("- ") or rest == "-":
            dashes += 1
            rest = rest[2:].lstrip(" ")
        base = len(indents) + dashes
        peak = flow
        for char in rest:
            if char in "[{":
                flow += 1
                peak = max(peak, flow)
            elif char in "]}":
                flow = max(0, flow - 1)
        if base + peak > max_depth:
            raise InvalidRequest(
                f"document nests deeper than {max_depth} levels (line {number})", field=field
            )
