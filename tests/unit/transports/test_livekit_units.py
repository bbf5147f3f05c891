"""LiveKit transport below the network (F-083), with the SDK's real types.

Skipped only when the optional SDKs are missing (``pip install 'rspp[livekit]'``); the
rest of RSPP never imports them (checked here too).
"""

from __future__ import annotations

import random
import subprocess
import sys

import jwt
import numpy as np
import pytest

from rspp.transports import (
    LiveKitConfig,
    ReconnectPolicy,
    agent_token,
    caller_token,
    frame_to_pcm,
    livekit_available,
    pcm_to_frame,
)

pytestmark = pytest.mark.unit

needs_sdk = pytest.mark.skipif(not livekit_available(),
                               reason="the LiveKit SDKs are not installed (rspp[livekit])")
CFG = LiveKitConfig(url="ws://127.0.0.1:7880", api_key="devkey",
                    api_secret="secret-of-at-least-thirty-two-bytes!!")


def test_rspp_never_imports_the_livekit_sdk_unless_a_room_is_joined() -> None:
    code = ("import sys, rspp.transports, rspp.server, rspp.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'livekit'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_reconnect_backoff_grows_to_its_cap_with_bounded_jitter() -> None:
    policy = ReconnectPolicy(initial_s=0.5, factor=2.0, max_s=3.0, attempts=6, jitter=0.2)
    delays = list(policy.delays(random.Random(7)))
    assert len(delays) == 5  # the waits between six tries
    for got, base in zip(delays, [0.5, 1.0, 2.0, 3.0, 3.0], strict=True):
        assert base * 0.8 <= got <= base * 1.2
    assert list(ReconnectPolicy(attempts=1).delays()) == []
    # the same seed, the same schedule (tests and replays can pin it)
    assert list(policy.delays(random.Random(7))) == delays


@needs_sdk
def test_room_tokens_grant_the_named_room_to_the_agent_and_the_caller() -> None:
    agent = jwt.decode(agent_token(CFG, "support-1", "s1"), CFG.api_secret,
                       algorithms=["HS256"], options={"verify_aud": False})
    assert agent["iss"] == "devkey" and agent["sub"] == "rspp-agent-s1"
    assert agent["video"]["room"] == "support-1" and agent["video"]["roomJoin"] is True
    assert agent["video"]["agent"] is True and agent["video"]["canPublishData"] is True
    assert agent["exp"] - agent["nbf"] <= CFG.token_ttl_s + 60
    caller = jwt.decode(caller_token(CFG, "support-1", "alice"), CFG.api_secret,
                        algorithms=["HS256"], options={"verify_aud": False})
    assert caller["sub"] == "alice" and caller["video"]["room"] == "support-1"
    assert not caller["video"].get("agent")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(agent_token(CFG, "r", "s"), "another-secret-of-thirty-two-bytes!!",
                   algorithms=["HS256"], options={"verify_aud": False})


@needs_sdk
def test_audio_frames_convert_to_mono_pcm_and_back() -> None:
    from livekit import rtc

    left = (np.arange(960) % 100).astype(np.int16)
    right = -left
    stereo = np.stack([left, right * 0 + 200], axis=1).reshape(-1).astype("<i2")
    frame = rtc.AudioFrame(stereo.tobytes(), 48000, 2, 960)
    mono = np.frombuffer(frame_to_pcm(frame), dtype="<i2")
    assert mono.shape == (960,)
    assert np.array_equal(mono, ((left.astype(np.int32) + 200) / 2).astype(np.int16))
    pcm = (np.sin(np.arange(960) / 10) * 1000).astype("<i2").tobytes()
    back = pcm_to_frame(pcm, 48000)
    assert isinstance(back, rtc.AudioFrame)
    assert (back.sample_rate, back.num_channels, back.samples_per_channel) == (48000, 1, 960)
    assert back.duration == pytest.approx(0.02)
    assert frame_to_pcm(back) == pcm
    assert pcm_to_frame(pcm + b"\x01", 48000).samples_per_channel == 960  # odd byte dropped
