"""The spec's ``transport`` section (F-087): jitter profiles per transport, lint, plan hash."""

from __future__ import annotations

import textwrap

import pytest

from rspp.spec import JITTER_PRESETS, compile_spec, lint_text, parse_spec_text

pytestmark = pytest.mark.unit

BASE = textwrap.dedent(
    """\
    name: ok
    version: 1.0.0
    nodes:
      - id: stt
        type: stt
      - id: tts
        type: tts
    edges:
      - {from: input.audio, to: stt.audio}
      - {from: stt.final, to: tts.text}
      - {from: tts.audio, to: output.audio}
    """
)


def test_without_a_transport_section_each_transport_has_its_default_profile() -> None:
    j = compile_spec(parse_spec_text(BASE)).jitter
    assert (j.websocket.name, j.telephony.name, j.webrtc.name, j.livekit.name) == (
        "balanced", "robust", "low_latency", "low_latency")
    assert j.for_transport("telephony") == JITTER_PRESETS["robust"]


def test_fields_override_the_named_profile_and_per_transport_overrides_win() -> None:
    text = BASE + textwrap.dedent(
        """\
        transport:
          jitter: {profile: low_latency, loss: drop}
          jitter_by_transport:
            telephony: {profile: robust, conceal_max_frames: 7}
        """
    )
    j = compile_spec(parse_spec_text(text)).jitter
    assert j.websocket == JITTER_PRESETS["low_latency"].__class__(
        **{**_fields(JITTER_PRESETS["low_latency"]), "loss": "drop"})
    assert (j.telephony.name, j.telephony.loss, j.telephony.conceal_max_frames,
            j.telephony.target_ms) == ("robust", "drop", 7, 100)


def _fields(p: object) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(p)  # type: ignore[call-overload, no-any-return]


def test_declaring_a_profile_changes_the_graph_hash_and_leaving_it_out_does_not() -> None:
    plain = compile_spec(parse_spec_text(BASE)).graph_hash
    same = compile_spec(parse_spec_text(BASE + "metadata: {note: x}\n")).graph_hash
    robust = compile_spec(parse_spec_text(
        BASE + "transport:\n  jitter: {profile: robust}\n")).graph_hash
    assert plain == same != robust


@pytest.mark.parametrize(("section", "path", "fragment"), [
    ("  jitter: {profile: fast}\n", "transport.jitter.profile", "'fast' is not allowed"),
    ("  jitter: {target_ms: -5}\n", "transport.jitter.target_ms", ">= 0"),
    ("  jitter: {loss: retry}\n", "transport.jitter.loss", "'retry' is not allowed"),
    ("  jitter: {mode: fixed, max_ms: 10}\n", "transport.jitter.max_ms",
     "min_ms <= target_ms <= max_ms"),
    ("  jitter_by_transport:\n    telephony: {min_ms: 500}\n",
     "transport.jitter_by_transport.telephony.min_ms", "min_ms <= target_ms <= max_ms"),
    ("  jitter_by_transport:\n    carrier_pigeon: {}\n",
     "transport.jitter_by_transport", "carrier_pigeon"),
    ("  jitter: {reorder_window_frames: 1000}\n", "transport.jitter.reorder_window_frames",
     "<= 256"),
])
def test_lint_names_the_field_in_one_line(section: str, path: str, fragment: str) -> None:
    issues = lint_text(BASE + "transport:\n" + section, "p.yaml")
    errors = [i for i in issues if i.severity == "error"]
    assert len(errors) == 1, [i.format() for i in errors]
    assert errors[0].path.startswith(path) and fragment in errors[0].message
    assert "\n" not in errors[0].message and errors[0].hint


def test_buffering_strategy_sets_jitter_and_ingress_audio_edges_fields_apply_over_it(
) -> None:
    def compiled(extra: str) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
        g = compile_spec(parse_spec_text(BASE + textwrap.dedent(extra)))
        kinds = ("websocket", "telephony", "webrtc", "livekit")
        return ({k: g.jitter.for_transport(k).name for k in kinds},
                {e.id: (str(e.buffer.strategy), e.buffer.max_queue_ms) for e in g.edges
                 if e.port_type == "audio"})

    jit, edges = compiled("transport: {buffering: latency_first}\n")
    assert set(jit.values()) == {"low_latency"}
    assert edges == {"input.audio->stt.audio": ("drop", 100),
                     "tts.audio->output.audio": ("drop", 500)}  # reply audio: the profile's
    jit, edges = compiled("transport:\n  buffering: accuracy_first\n"
                          "  jitter_by_transport: {telephony: {profile: robust}}\n")
    assert jit == {"websocket": "accuracy", "telephony": "robust", "webrtc": "accuracy",
                   "livekit": "accuracy"}
    assert edges["input.audio->stt.audio"] == ("block", 10_000)
    issues = lint_text(BASE + "transport: {buffering: fastest}\n")
    assert [i.path for i in issues] == ["transport.buffering"], issues
