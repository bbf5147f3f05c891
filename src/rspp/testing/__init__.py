"""Public testing kits for RSPP users and our own tests (see :mod:`rspp.testing.fakes`).

:class:`GraphHarness` / :class:`NodeHarness` feed event streams into a graph or a
single node on a virtual clock and expose outputs, control signals and drops (F-128).
:func:`load_corpus` / :func:`speak` / :func:`word_errors`: the spoken-question corpus.
:func:`with_patient_budgets`: a spec with budgets a busy machine meets;
:data:`TEXT_CHAT_SPEC`: a text-only chat spec (many quick turns); :data:`ECHO_TEXT_SPEC`:
a text echo through the redaction node (no LLM);
:func:`voice_assistant_spec`: the offline voice assistant's graph with what a test varies.
:class:`Impairment`: a lossy, jittery network's order of numbered frames (F-087).
:class:`WebRTCPeer`: a browser-like WebRTC client of ``rspp serve`` (``rspp[webrtc]``).
:class:`Pki`: a throw-away certificate authority for mutual-TLS deployments (F-120).
:func:`turn_correlation`: where a recorded timeline breaks the turn-correlation rule (F-013).
:class:`FakeVault`: HashiCorp Vault's Transit engine over real HTTP (KMS keys, F-169);
:class:`VaultProcess`: it as its own process (stop/start: an outage and a recovery).
:mod:`rspp.testing.processes`: the ``rspp`` command line and ``rspp serve`` as child processes.
"""

from rspp.testing._correlation import TurnCorrelation, turn_correlation
from rspp.testing._harness import GraphHarness, NodeHarness, audio_frames, text_partials
from rspp.testing._network import Impairment
from rspp.testing._pki import CertificateAuthority, Pki
from rspp.testing._specs import (
    DOMAIN_STT,
    ECHO_TEXT_SPEC,
    PATIENT_BUDGETS,
    SILENCE_VAD,
    TEXT_CHAT_SPEC,
    TEXT_VOICE_SPEC,
    voice_assistant_spec,
    with_patient_budgets,
)
from rspp.testing._speech_corpus import (
    CORPUS_PATH,
    PAUSE_MS,
    Utterance,
    load_corpus,
    normalise_words,
    speak,
    word_errors,
)
from rspp.testing._vault import FakeVault
from rspp.testing._vault_process import VaultProcess
from rspp.testing._webrtc_peer import WebRTCPeer

__all__ = [
    "CORPUS_PATH",
    "DOMAIN_STT",
    "ECHO_TEXT_SPEC",
    "PATIENT_BUDGETS",
    "PAUSE_MS",
    "SILENCE_VAD",
    "TEXT_CHAT_SPEC",
    "TEXT_VOICE_SPEC",
    "CertificateAuthority",
    "FakeVault",
    "GraphHarness",
    "Impairment",
    "NodeHarness",
    "Pki",
    "TurnCorrelation",
    "Utterance",
    "VaultProcess",
    "WebRTCPeer",
    "audio_frames",
    "load_corpus",
    "normalise_words",
    "speak",
    "text_partials",
    "turn_correlation",
    "voice_assistant_spec",
    "with_patient_budgets",
    "word_errors",
]
