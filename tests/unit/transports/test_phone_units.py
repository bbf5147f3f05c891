"""Telephony pieces below the network: the carrier's request signature, the carrier
protocol's messages, mark names, mu-law tables and the TwiML answer (F-085)."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from rspp.server import parse_phone_number, twilio_signature
from rspp.server._telephony import _twiml
from rspp.transports import ProtocolError, mulaw_decode, mulaw_encode, parse_mark
from rspp.transports._mulaw import mulaw_decode_tables, mulaw_expand
from rspp.transports._twilio_protocol import (
    CarrierWriter,
    Dtmf,
    Media,
    StreamStart,
    decode_carrier,
    decode_payload,
)

pytestmark = pytest.mark.unit

URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def test_signature_matches_the_carriers_published_vectors() -> None:
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"),
              ("Digits", "1234"), ("From", "+14158675309"), ("To", "+18005551212")]
    assert twilio_signature("12345", URL, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature("12345", URL, params[::-1]) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    # a repeated field: its distinct values, sorted
    repeated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"),
                ("Digits", "1234"), ("Digits", "1234")]
    assert twilio_signature("12345", URL, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert twilio_signature("12345", URL + "&x=1", params) != "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature("54321", URL, params) != "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_carrier_messages_decode_and_bad_ones_name_the_field() -> None:
    start = decode_carrier(
        '{"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": {'
        '"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1", "tracks": ["inbound"],'
        '"mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},'
        '"customParameters": {"token": "t", "session_id": "s"}, "newField": 1}}')
    assert isinstance(start, StreamStart)
    assert start.start.call_sid == "CA1" and start.start.custom_parameters["token"] == "t"
    dtmf = decode_carrier('{"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": "#"}}')
    assert isinstance(dtmf, Dtmf) and dtmf.dtmf.digit == "#"
    for text, field in (('{"event": "dance"}', "event"), ('{"event": "media"}', "media"),
                        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "dtmf.digit"),
                        ("{nope", "$"), ("[]", "$")):
        with pytest.raises(ProtocolError) as err:
            decode_carrier(text)
        assert err.value.field == field, text
    # the payload is decoded with the message: strict base64 (padding required, nothing
    # after it, no whitespace, only the alphabet), a bad one named as such
    def media(payload: str) -> str:
        return json.dumps({"event": "media", "media": {"payload": payload}})

    got = decode_carrier(media("//8="))
    assert isinstance(got, Media) and decode_payload(got, 8000) == b"\xff\xff"
    for bad in ("@@", "//8", "//8=x", "=//8", " //8=", "//8=\n", "\u00e9AAA", "_-_-"):
        with pytest.raises(ProtocolError, match="not base64") as err:
            decode_carrier(media(bad))
        assert err.value.field == "media.payload", bad
    with pytest.raises(ProtocolError) as err:  # a missing payload is not a base64 error
        decode_carrier('{"event": "media", "media": {}}')
    assert err.value.field == "media.payload" and "base64" not in str(err.value)
    big = decode_carrier(media(base64.b64encode(bytes(9000)).decode()))
    assert isinstance(big, Media)
    with pytest.raises(ProtocolError, match="over 8000"):
        decode_payload(big, 8000)


def test_outbound_messages_are_the_protocols_json_for_any_stream_id() -> None:
    for sid in ("MZ1", 'MZ"quoted\\back', "MZ\u00e9\n"):
        out = CarrierWriter(sid)
        assert json.loads(out.media(b"\x00\xff\x7f")) == {
            "event": "media", "streamSid": sid, "media": {"payload": "AP9/"}}
        assert json.loads(out.mark('t"1#5$')) == {
            "event": "mark", "streamSid": sid, "mark": {"name": 't"1#5$'}}
        assert json.loads(out.clear()) == {"event": "clear", "streamSid": sid}


def test_mark_names_round_trip_and_foreign_marks_are_ignored() -> None:
    name = CarrierWriter("MZ1").mark("s1:turn:2#25$")
    assert '"name":"s1:turn:2#25$"' in name
    assert parse_mark("s1:turn:2#25$") == ("s1:turn:2", 25)
    assert parse_mark("s1:turn:2#5") == ("s1:turn:2", 5)
    for foreign in ("hello", "#5", "t#", "t#x", "t#1234567890"):
        assert parse_mark(foreign) is None, foreign


def _g711_ulaw(sample: int) -> int:
    """The reference encoder of one sample (G.711 / Sun g711.c linear2ulaw)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), 32635) + 0x84
    exponent = 7
    while exponent > 0 and not magnitude & (0x4000 >> (7 - exponent)):
        exponent -= 1
    return ~(sign | (exponent << 4) | ((magnitude >> (exponent + 3)) & 0x0F)) & 0xFF


def test_mulaw_encode_matches_the_reference_on_every_sample() -> None:
    every = np.arange(-32768, 32768, dtype="<i2")
    assert mulaw_encode(every.tobytes()) == bytes(_g711_ulaw(int(v)) for v in every)
    assert mulaw_encode(every[:3].tobytes() + b"\x01") == mulaw_encode(every[:3].tobytes())


def test_mulaw_tables_follow_g711() -> None:
    # the segment ends of G.711: 0 -> 0xFF, full scale -> 0x80 / 0x00
    assert mulaw_encode(np.array([0, 32767, -32768], dtype="<i2").tobytes()) == b"\xff\x80\x00"
    decoded = np.frombuffer(mulaw_decode(bytes(range(256))), dtype="<i2")
    assert decoded[0xFF] == 0 and decoded[0x80] == 32124 and decoded[0x00] == -32124
    assert mulaw_encode(mulaw_decode(bytes(range(256)))) == bytes(range(256)).replace(
        b"\x7f", b"\xff")  # 0x7F is "negative zero"


def test_mulaw_decode_is_the_g711_table_on_every_code_whichever_codec_runs() -> None:
    # mulaw_decode is audioop's ulaw2lin where Python still has it, else the byte tables:
    # both are the same G.711 expansion, code for code (any length, empty included)
    codes = bytes(range(256))
    table = np.frombuffer(mulaw_decode_tables(codes), dtype="<i2")
    assert table[0xFF] == 0 and table[0x80] == 32124 and table[0x00] == -32124
    assert mulaw_decode(codes) == mulaw_decode_tables(codes)
    assert mulaw_decode(codes[::-1] * 3 + codes[:7]) == mulaw_decode_tables(codes[::-1] * 3
                                                                           + codes[:7])
    assert mulaw_decode(b"") == mulaw_decode_tables(b"") == b""
    # the read loop's expander (``ulaw2lin`` itself where audioop is there) is the same
    assert mulaw_expand(codes, 2) == mulaw_decode(codes)
    assert mulaw_expand(codes[::-1] * 3 + codes[:7], 2) == mulaw_decode(codes[::-1] * 3
                                                                        + codes[:7])


def test_phone_number_configuration_and_twiml() -> None:
    assert parse_phone_number("+15550100=acme", "voice-assistant")[1].pipeline == \
        "voice-assistant"
    number, where = parse_phone_number("+15550100=acme/phone-assistant", None)
    assert (number, where.tenant_id, where.pipeline) == ("+15550100", "acme", "phone-assistant")
    for bad in ("+15550100", "=acme", "+15550100=", "+15550100=acme"):
        with pytest.raises(ValueError):
            parse_phone_number(bad, None)
    doc = ET.fromstring(_twiml("wss://x/v1/telephony/twilio/stream",
                               {"token": 'a"<&>b', "session_id": "s"}))
    stream = doc.find("./Connect/Stream")
    assert stream is not None and stream.attrib["url"] == "wss://x/v1/telephony/twilio/stream"
    assert {p.attrib["name"]: p.attrib["value"] for p in stream} == {
        "token": 'a"<&>b', "session_id": "s"}
