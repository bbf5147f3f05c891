"""The transport conformance profile against our WebSocket, WebRTC and phone transports (F-164).

``rspp conformance check transport`` routes a session on a running ``rspp serve`` (the
offline voice assistant) and drives it as a client: an invalid token is refused, speech
goes in and a transcript comes back, the spoken reply plays and commits, an interrupt
aborts the next reply with no audio after the abort, an unknown message gets an error
naming its field and the session goes on. The run's results are certified against the
built-in ``transport`` profile; omitting a mandatory category rejects them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

KEY = "conformance-admin-key"
CARRIER_TOKEN = "carrier-auth-token-0123456789"
NUMBER = "+15550100"
PHONE = Path(__file__).resolve().parents[2] / "pipelines" / "examples" / "phone_assistant.yaml"
CATEGORIES = ["auth", "handshake", "ingress_audio", "egress_audio", "cancel",
              "malformed_input"]


def test_served_websocket_transport_passes_the_transport_profile(
    embedded_serve: Callable[..., tuple[ServeProcess, Path]], rspp_cli: RsppCli,
    tmp_path: Path
) -> None:
    srv, _ = embedded_serve(KEY)
    saved = tmp_path / "transport.json"
    res = rspp_cli("conformance", "check", "transport", srv.url, "--tenant", "acme",
                   "--pipeline", "voice-assistant", "--api-key", KEY, "--out", str(saved),
                   "--json", timeout=110)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    cert = out["certification"]
    assert cert["certified"] and cert["profile"] == "transport/v1", cert
    assert [(r["category"], r["status"]) for r in cert["rows"]] == \
        [(c, "pass") for c in CATEGORIES]
    seen = {r["category"]: r["detail"] for r in out["results"]["results"]}
    assert seen["auth"] == "refused an invalid token: 4401, no token: 4401", seen
    assert "weather" in seen["ingress_audio"], seen
    assert seen["cancel"].startswith("abort (cancelled)"), seen
    assert seen["malformed_input"].startswith("error bad_message (field type)"), seen

    # the same results without a mandatory category are rejected
    body = json.loads(saved.read_text())
    body["results"] = [r for r in body["results"] if r["category"] != "cancel"]
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(body))
    rejected = rspp_cli("conformance", "certify", str(partial))
    assert rejected.returncode == 1
    assert "MISSING cancel (mandatory)" in rejected.stdout
    assert rejected.stdout.strip().endswith("REJECTED: mandatory category cancel missing")


def test_served_phone_transport_passes_the_transport_profile(
    serve_process: Callable[..., ServeProcess], rspp_cli: RsppCli, tmp_path: Path
) -> None:
    """The same profile against the phone adapter (Twilio media streams): the signed voice
    webhook, the media stream a carrier opens, speech in and the reply played to its last
    mark, a barge-in answered with ``clear``, an unknown carrier event refused with a 4400
    close naming the field while the next call is answered."""
    from rspp.testing import with_patient_budgets

    spec = tmp_path / "phone.yaml"
    spec.write_text(with_patient_budgets(PHONE.read_text()))
    srv = serve_process(str(spec), "--db", f"sqlite+aiosqlite:///{tmp_path / 'cp.db'}",
                        "--api-key", KEY, "--twilio-auth-token", CARRIER_TOKEN,
                        "--phone-number", f"{NUMBER}=acme").wait_ready()
    res = rspp_cli("conformance", "check", "transport", srv.url, "--transport", "phone",
                   "--twilio-auth-token", CARRIER_TOKEN, "--phone-number", NUMBER, "--json",
                   timeout=110)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    cert = out["certification"]
    assert cert["certified"] and cert["subject"].startswith("phone transport at "), cert
    assert [(r["category"], r["status"]) for r in cert["rows"]] == \
        [(c, "pass") for c in CATEGORIES]
    seen = {r["category"]: r["detail"] for r in out["results"]["results"]}
    assert seen["auth"] == "webhook 401/403; stream closed 4401", seen
    assert seen["egress_audio"].endswith("reply played to its end"), seen
    assert seen["cancel"].startswith("clear after barge-in"), seen
    assert seen["malformed_input"].startswith("closed 4400 (bad message (event)"), seen


def test_served_webrtc_transport_passes_the_transport_profile(
    embedded_serve: Callable[..., tuple[ServeProcess, Path]], rspp_cli: RsppCli
) -> None:
    """The same profile against the WebRTC adapter: an aiortc peer (Opus microphone, the
    ``rspp`` data channel) on a routed session; an offer with an invalid token is 401, the
    spoken question is transcribed and answered with Opus reply audio, a barge-in gets
    ``clear`` and the turn's abort, an unknown data-channel message an error naming it."""
    pytest.importorskip("aiortc", reason="WebRTC needs the extra: pip install "
                                         "'rspp[webrtc]' (dev installs it)")
    srv, _ = embedded_serve(KEY)
    res = rspp_cli("conformance", "check", "transport", srv.url, "--transport", "webrtc",
                   "--tenant", "acme", "--pipeline", "voice-assistant", "--api-key", KEY,
                   "--json", timeout=110)
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    cert = out["certification"]
    assert cert["certified"] and cert["subject"].startswith("webrtc transport at "), cert
    assert [(r["category"], r["status"]) for r in cert["rows"]] == \
        [(c, "pass") for c in CATEGORIES]
    seen = {r["category"]: r["detail"] for r in out["results"]["results"]}
    assert seen["auth"] == "an offer with an invalid token: 401", seen
    assert "weather" in seen["ingress_audio"], seen
    assert seen["cancel"].startswith("clear and abort of "), seen
    assert seen["malformed_input"].startswith("error bad_message (field type)"), seen
