"""JSON and MessagePack codecs round-trip every kind losslessly (F-030, F-021, NF-013)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from _contracts_support import fixture_files, kind_of_fixture, load

from rspp.contracts import (
    ENCODINGS,
    KIND_TYPES,
    KINDS,
    ContractValidationError,
    ControlSignal,
    DeterminismContext,
    EventRecord,
    ResolvedTurnPlan,
    TurnTransition,
    canonical_json,
    check_record,
    decode,
    decode_json,
    decode_msgpack,
    encode,
    encode_json,
    encode_msgpack,
    from_builtins,
    negotiate_encoding,
    sha256_hex,
    to_builtins,
)
from rspp.errors import ContractError

pytestmark = pytest.mark.unit

VALID = fixture_files("valid")


def _one_per_kind() -> list[tuple[str, Any]]:
    seen: dict[str, Any] = {}
    for path in VALID:
        seen.setdefault(kind_of_fixture(path), load(path))
    return sorted(seen.items())


def test_a_fixture_exists_for_every_kind() -> None:
    assert {k for k, _ in _one_per_kind()} == set(KINDS)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_round_trip_json_and_msgpack(path: Any) -> None:
    kind, data = kind_of_fixture(path), load(path)
    obj = from_builtins(kind, data)
    assert isinstance(obj, KIND_TYPES[kind])
    assert check_record(obj) == []
    assert to_builtins(obj) == data  # lossless: same JSON as the fixture
    for validate in (True, False):
        assert decode_json(kind, encode_json(obj), validate=validate) == obj
        assert decode_msgpack(kind, encode_msgpack(obj), validate=validate) == obj
    for encoding in ENCODINGS:
        assert decode(kind, encode(obj, encoding), encoding) == obj


def test_msgpack_is_smaller_than_json_for_a_plan() -> None:
    kind, data = next((k, d) for k, d in _one_per_kind() if k == "resolved_turn_plan")
    plan = from_builtins(kind, data)
    assert len(encode_msgpack(plan)) < len(encode_json(plan))


def test_decode_rejects_conditional_violation_with_path() -> None:
    data = load(next(p for p in VALID if p.stem == "control_signal__abort"))
    del data["reason"]
    raw = json.dumps(data).encode()
    with pytest.raises(ContractValidationError) as info:
        decode_json("control_signal", raw)
    assert info.value.issues[0].path == "reason"
    assert "reason" in str(info.value)
    # the trusted fast path checks structure only
    assert isinstance(decode_json("control_signal", raw, validate=False), ControlSignal)


def test_fast_path_still_names_the_bad_field() -> None:
    data = load(next(p for p in VALID if p.stem == "resolved_turn_plan__full"))
    data["edge_buffer_policies"]["e1"]["max_queue_items"] = 0
    with pytest.raises(ContractValidationError) as info:
        decode_msgpack("resolved_turn_plan", msgspec.msgpack.encode(data), validate=False)
    # the fast path cannot name map keys; the validating path does
    assert info.value.issues[0].path == "edge_buffer_policies.*.max_queue_items"
    with pytest.raises(ContractValidationError) as full:
        decode_msgpack("resolved_turn_plan", msgspec.msgpack.encode(data))
    assert full.value.issues[0].path == "edge_buffer_policies.e1.max_queue_items"


@pytest.mark.parametrize("junk", [b"", b"{", b"\xff\x00", b"[1,2", b"null"])
def test_malformed_bytes_raise_contract_error_not_crash(junk: bytes) -> None:
    for decoder in (decode_json, decode_msgpack):
        with pytest.raises(ContractError):
            decoder("event_record", junk)


def test_unknown_kind_and_encoding_are_contract_errors() -> None:
    with pytest.raises(ContractError, match="unknown contract kind 'bogus'"):
        decode_json("bogus", b"{}")
    with pytest.raises(ContractError, match="unknown encoding"):
        encode(TurnTransition(from_state="Idle", trigger="close", to_state="Closed"), "xml")


def test_incompatible_schema_version_fails_with_actionable_error() -> None:
    data = load(next(p for p in VALID if p.stem == "event_record__text_event"))
    data["schema_version"] = "1"
    with pytest.raises(ContractValidationError, match="schema_version"):
        decode_json("event_record", json.dumps(data).encode())


def test_check_record_reports_conditional_rules_on_typed_structs() -> None:
    good = from_builtins("event_record", load(next(p for p in VALID if "text_event" in p.stem)))
    assert isinstance(good, EventRecord)
    bad = msgspec.structs.replace(good, payload_class="audio_raw")
    assert [i.path for i in check_record(bad)] == ["media_time"]
    illegal = TurnTransition(from_state="Idle", trigger="close", to_state="Closed")
    assert check_record(illegal)
    with pytest.raises(ContractValidationError):
        to_builtins(illegal)
    assert to_builtins(illegal, check=False)["deterministic"] is True


def test_canonical_json_is_sorted_compact_and_hash_stable() -> None:
    data = load(next(p for p in VALID if p.stem == "resolved_turn_plan__full"))
    plan = from_builtins("resolved_turn_plan", data)
    assert isinstance(plan, ResolvedTurnPlan)
    canon = canonical_json(plan)
    assert b" " not in canon.replace(b"voice assistant", b"")
    assert canon == json.dumps(json.loads(canon), sort_keys=True, separators=(",", ":")).encode()
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'
    shuffled = dict(reversed(list(data.items())))
    assert sha256_hex(canonical_json(shuffled)) == sha256_hex(canon)
    assert len(sha256_hex(canon)) == 64


def test_determinism_context_always_carries_nondeterministic_inputs() -> None:
    ctx = DeterminismContext(
        seed=1,
        ordering_markers=("seq",),
        merge_rule_id="m",
        merge_rule_version="v1.0",
        nondeterministic_inputs=(),
    )
    assert json.loads(encode_json(ctx))["nondeterministic_inputs"] == []


def test_encoding_negotiation_debug_json_and_production_msgpack() -> None:
    signal = from_builtins("control_signal", load(next(p for p in VALID if "barge_in" in p.stem)))
    debug = negotiate_encoding(["json"])
    production = negotiate_encoding(["MsgPack", "json"])
    assert (debug, production) == ("json", "msgpack")
    assert encode(signal, debug).startswith(b"{")
    for encoding in (debug, production):
        assert decode("control_signal", encode(signal, encoding), encoding) == signal
    with pytest.raises(ContractError, match="no shared encoding"):
        negotiate_encoding(["protobuf"])


def test_integral_float_is_an_integer_like_in_json_schema() -> None:
    data = load(next(p for p in VALID if p.stem == "event_record__text_event"))
    data["runtime_sequence"] = 17.0
    event = from_builtins("event_record", data)
    assert event.runtime_sequence == 17 and type(event.runtime_sequence) is int
    data["runtime_sequence"] = 17.5
    with pytest.raises(ContractValidationError, match="runtime_sequence"):
        from_builtins("event_record", data)


def test_bundle_fast_path_reports_missing_parts() -> None:
    with pytest.raises(ContractValidationError, match="control_signal"):
        decode_json("artifact_bundle", b'{"event": {}}', validate=False)
