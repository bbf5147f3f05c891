"""Spec texts for tests that run real sessions on a machine that may be busy."""

from __future__ import annotations

__all__ = ["PATIENT_BUDGETS", "TEXT_CHAT_SPEC", "TEXT_VOICE_SPEC", "with_patient_budgets"]

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
