"""``audio_frame``: the live transports' per-frame event is the keyword-built one, slot for slot."""

from __future__ import annotations

from rspp.kernel import AudioFormat, Event, audio_frame


def _slots(ev: Event) -> dict[str, object]:
    return {name: getattr(ev, name) for name in Event.__slots__}


def test_audio_frame_sets_every_slot_as_the_constructor_does() -> None:
    fmt = AudioFormat(16000, 1)
    for payload, index, seq in ((bytes(640), 0, 0), (b"\x01\x02" * 7, 12345, 9), (b"", 3, 1)):
        built = Event("audio_chunk", payload, audio_format=fmt, sample_index=index,
                      transport_seq=seq)
        fast = audio_frame(payload, fmt, index, seq)
        # every slot is set (a slot added to Event but not to audio_frame fails here)
        assert _slots(fast) == _slots(built)
        assert fast.size == len(payload) and fast.seq == -1 and fast.turn_id is None
    assert audio_frame(b"ab", None, 0, 0).audio_format is None


def test_derive_makes_the_event_the_constructor_makes() -> None:
    import pytest

    cause = Event("audio_chunk", bytes(4), turn_id="t1", sync_id="s1")
    cause.event_id, cause.ingress_ns = "e7", 123
    for kind, payload, kw in (("text", "hello", {"final": False}),
                              ("utterance_end", None, {}),
                              ("audio_chunk", bytes(6), {"audio_format": AudioFormat(8000, 1),
                                                         "sample_index": 5, "size": None}),
                              ("token", "x", {"attrs": {"a": 1}, "revision": 2, "size": 9})):
        built = Event(kind, payload, turn_id="t1", sync_id="s1", **kw)  # type: ignore[arg-type]
        built.parent_id, built.ingress_ns = "e7", 123
        assert _slots(cause.derive(kind, payload, **kw)) == _slots(built)
    with pytest.raises(TypeError):
        cause.derive("text", "x", turn_id="t2")  # as the constructor: a keyword given twice
    with pytest.raises(TypeError):
        cause.derive("text", "x", no_such_field=1)
