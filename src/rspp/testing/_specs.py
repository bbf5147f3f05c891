"""Spec texts for tests that run real sessions on a machine that may be busy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["DOMAIN_STT", "ECHO_TEXT_SPEC", "PATIENT_BUDGETS", "SILENCE_VAD", "TEXT_CHAT_SPEC",
           "TEXT_VOICE_SPEC", "voice_assistant_spec", "with_patient_budgets"]

#: wall-clock budgets with room for a machine whose cores are all busy: served sessions
#: enforce budgets, and the offline engines then run slower than real time
PATIENT_BUDGETS = "budgets: {turn_ms: 60000, provider_timeout_ms: 20000}"


def with_patient_budgets(spec_text: str) -> str:
    """``spec_text`` with :data:`PATIENT_BUDGETS` placed before its ``providers:`` block."""
    if "\nproviders:" not in spec_text or "\nbudgets:" in spec_text:
        raise ValueError("with_patient_budgets needs a spec with a top-level `providers:` "
                         "block and no `budgets:` of its own")
    return spec_text.replace("\nproviders:", f"\n{PATIENT_BUDGETS}\n\nproviders:", 1)


#: a text-only chat (typed text -> the offline ``local`` LLM -> reply text, no audio to
#: synthesise or pace) with :data:`PATIENT_BUDGETS`: many turns in little time
TEXT_CHAT_SPEC = with_patient_budgets("""name: text-chat
version: 1.0.0
profile: simple/v1
providers:
  llm: {primary: local}
nodes:
  - {id: llm, type: llm}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: output.text}
""")


#: :func:`voice_assistant_spec` parts: pocketsphinx on the assistant's domain model without
#: the second pass (the final is ready at once), and energy VAD ending a turn on 500 ms
#: of silence (as pipelines/examples/voice_assistant.yaml)
DOMAIN_STT = "{primary: pocketsphinx, config: {language_model: domain, second_pass: false}}"
SILENCE_VAD = "params: {engine: energy, endpointing: silence, silence_ms: 500}"


def voice_assistant_spec(
    name: str,
    *,
    head: str = "",
    stt: str = "{primary: pocketsphinx}",
    providers: str = "",
    tail: str = "",
    vad: str = "",
    reply: bool = True,
    stt_nodes: Sequence[str] = (),
    before_tts: str = "",
    nodes: Sequence[str] = (),
    buffers: Mapping[str, str] | None = None,
    transcript_edges: Sequence[str] = (),
    tts_from: str = "segmenter",
    edges: Sequence[str] = (),
) -> str:
    """The offline voice assistant's graph as spec text (version 1.0.0): VAD -> STT ->
    output.transcript and, with ``reply``, STT -> LLM -> sentence segmenter -> TTS ->
    output.audio on the offline providers (``stt``, the local LLM, espeak-ng).

    A test passes only what differs: ``head`` (top-level lines before ``providers:``, e.g.
    budgets), ``stt`` (the STT provider's mapping) or ``providers`` (the whole block's body,
    two-space indented), ``tail`` (top-level lines after it, e.g. ``slo:``), ``vad`` (the
    VAD node's further fields, e.g. ``params: {...}``), ``stt_nodes`` (node mappings listed
    right after the STT), ``before_tts`` (a node mapping ``{id: X, ...}`` listed and wired
    between segmenter and TTS), ``nodes`` (node mappings listed last), ``buffers`` (an
    edge's ``buffer`` mapping by its target port, e.g. ``stt.audio``), ``transcript_edges``
    (edge mappings listed before STT -> output.transcript), ``tts_from`` (the node whose
    ``text`` the TTS speaks) and ``edges`` (edge mappings listed last).
    """
    buffer = dict(buffers or {})

    def edge(source: str, target: str) -> str:
        extra = f", buffer: {buffer.pop(target)}" if target in buffer else ""
        return f"{{from: {source}, to: {target}{extra}}}"

    listed = [f"{{id: vad, type: vad{', ' + vad if vad else ''}}}", "{id: stt, type: stt}",
              *stt_nodes]
    wired = [edge("input.audio", "vad.audio"), edge("vad.audio", "stt.audio"),
             edge("vad.vad", "stt.vad"), *transcript_edges,
             edge("stt.final", "output.transcript")]
    engines = [f"  stt: {stt}"]
    if reply:
        engines += ["  llm: {primary: local}", "  tts: {primary: espeak}"]
        listed += ["{id: llm, type: llm}", "{id: segmenter, type: sentence_segmenter}"]
        wired += [edge("stt.final", "llm.text"), edge("llm.text", "segmenter.text")]
        if before_tts:
            inserted = before_tts.split(",", 1)[0].removeprefix("{id:").strip()
            listed.append(before_tts)
            wired += [edge("segmenter.text", f"{inserted}.text"),
                      edge(f"{inserted}.text", "tts.text")]
        else:
            wired.append(edge(f"{tts_from}.text", "tts.text"))
        listed.append("{id: tts, type: tts}")
        wired.append(edge("tts.audio", "output.audio"))
    if buffer:
        raise ValueError(f"voice_assistant_spec: no edge into {sorted(buffer)}")
    lines = [f"name: {name}", "version: 1.0.0", *([head] if head else []), "providers:",
             providers.rstrip("\n") if providers else "\n".join(engines),
             *([tail] if tail else []), "nodes:", *(f"  - {n}" for n in [*listed, *nodes]),
             "edges:", *(f"  - {e}" for e in [*wired, *edges])]
    return "\n".join(lines) + "\n"


#: typed text -> the offline ``local`` LLM -> reply text, and sentence by sentence to the
#: offline ``espeak`` TTS -> reply audio, with :data:`PATIENT_BUDGETS`: a session with both
#: event messages and audio frames and no speech recognition to wait for
TEXT_VOICE_SPEC = with_patient_budgets("""name: text-voice
version: 1.0.0
profile: simple/v1
providers:
  llm: {primary: local}
  tts: {primary: espeak, timeout_ms: 20000}
nodes:
  - {id: llm, type: llm}
  - {id: segmenter, type: sentence_segmenter}
  - {id: tts, type: tts}
edges:
  - {from: input.text, to: llm.text}
  - {from: llm.text, to: output.text}
  - {from: llm.text, to: segmenter.text}
  - {from: segmenter.text, to: tts.text}
  - {from: tts.audio, to: output.audio}
""")


#: typed text -> redaction node -> reply text: a pipeline with no LLM node (its sessions
#: never wait on an LLM execution pool, F-109), no provider and patient budgets
ECHO_TEXT_SPEC = """name: echo-chat
version: 1.0.0
profile: simple/v1
budgets: {turn_ms: 600000, node_ms: 600000, path_ms: 600000, edge_ms: 600000}
nodes:
  - {id: redact, type: redaction}
edges:
  - {from: input.text, to: redact.text}
  - {from: redact.text, to: output.text}
"""
