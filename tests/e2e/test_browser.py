"""The browser page of ``rspp serve`` and the timeline viewer, in Debian's chromium.

Playwright for Python drives the system chromium (never a downloaded browser) with a
fake microphone that plays a WAV made by ``rspp say``
(``--use-fake-device-for-media-stream --use-file-for-fake-audio-capture``). The page
talks to a real ``rspp serve`` over WebRTC (and, ticked "WebSocket only", over its
WebSocket fallback): the question's transcript appears, reply audio arrives (measured
in the page with WebAudio: not silent), the turn's row shows its markers, commit and
latencies. A barge-in (spoken into the same microphone while
the reply plays) aborts the first turn and clears playback. The timeline viewer
(``rspp timeline view``) draws a recorded barge-in timeline: two rows and the abort.
Every test saves a screenshot in its output directory.

Without chromium the tests skip saying how to install it; under CI (``CI`` set) they fail.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rspp.transports import read_wav, write_wav

if TYPE_CHECKING:
    from tests.e2e.conftest import RsppCli, ServeProcess

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("RSPP_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parents[2]
VOICE = REPO / "pipelines" / "examples" / "voice_assistant.yaml"
KEY = "browser-e2e-admin-key"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        "--autoplay-policy=no-user-gesture-required"]
TIMEOUT_MS = 90_000

#: a second voice mixed into the fake microphone's stream on demand (the barge-in),
#: so the test speaks when the reply is playing instead of at a guessed time
MIXER = """
(() => {
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const stream = await real(constraints);
    const ctx = new AudioContext({ sampleRate: 48000 });
    const out = ctx.createMediaStreamDestination();
    ctx.createMediaStreamSource(stream).connect(out);
    window.__say = (b64, rate) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const pcm = new Int16Array(bytes.buffer);
      const buf = ctx.createBuffer(1, pcm.length, rate);
      const ch = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const node = ctx.createBufferSource();
      node.buffer = buf;
      node.connect(out);
      node.start();
    };
    return out.stream;
  };
})();
"""


def _chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    message = (f"chromium not found at {CHROMIUM}: install Debian's package (sudo apt-get "
               "install chromium) or set RSPP_CHROMIUM; the tests never download a browser")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``browser(wav=None, microphone=True)``: a chromium page (fake microphone playing
    ``wav`` once; ``microphone=False``: the user refuses it)."""
    exe = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched: list[Any] = []

        def page(wav: Path | None = None, *, microphone: bool = True) -> Any:
            args = [a for a in ARGS if microphone or a != "--use-fake-ui-for-media-stream"]
            if wav is not None:
                args.append(f"--use-file-for-fake-audio-capture={wav}%noloop")
            b = pw.chromium.launch(executable_path=str(exe), args=args, headless=True)
            launched.append(b)
            p = b.new_page(viewport={"width": 1280, "height": 900})
            p.set_default_timeout(TIMEOUT_MS)
            return p

        try:
            yield page
        finally:
            for b in launched:
                b.close()


@pytest.fixture(scope="module")
def served(embedded_serve: Callable[..., tuple[ServeProcess, Path]]) -> Iterator[ServeProcess]:
    """One embedded ``rspp serve`` (patient budgets) for the module."""
    _chromium()
    srv, _ = embedded_serve(KEY)
    yield srv
    code, _, err = srv.terminate()
    assert code == 0, err


def _with_silence(src: Path, out: Path, seconds: float) -> Path:
    pcm, rate = read_wav(src)
    write_wav(out, pcm + bytes(2 * int(rate * seconds)), rate)
    return out


def _talk(page: Any, url: str, transport: str = "webrtc") -> None:
    page.goto(f"{url}/")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('ready')")
    assert page.locator("#pipeline option").first.get_attribute("value") == "voice-assistant"
    if transport == "websocket":
        page.check("#force-ws")
    page.click("#talk")
    page.wait_for_function("window.rspp.events.some(e => e.type === 'ready')")
    assert page.evaluate("window.rspp.transport") == transport


@pytest.mark.parametrize("transport", ["webrtc", "websocket"])
def test_page_talks_and_draws_the_turn(
    served: ServeProcess, browser: Callable[..., Any], spoken: dict[str, Path], tmp_path: Path,
    transport: str
) -> None:
    wav = _with_silence(spoken["question"], tmp_path / "question.wav", 12.0)
    page = browser(wav)
    _talk(page, served.url, transport)
    page.wait_for_function("[...document.querySelectorAll('#transcript li')]"
                           ".some(li => li.textContent.includes('weather'))")
    page.wait_for_function("window.rspp.audio.loud >= 10")  # reply audio, heard by WebAudio
    row = page.locator("article.turn.outcome-commit.closed").first
    row.wait_for()
    for mark in ("speech_end", "turn_open", "first_audio", "commit", "close"):
        assert row.locator(f".track [data-mark={mark}]").count() == 1, mark
    latency = row.locator("[data-latency=speech_end_to_first_audio]").inner_text()
    assert re.fullmatch(r"\d+ ms", latency), latency
    assert re.search(r"voice-assistant@1\.0\.0 · plan [0-9a-f]{12}",
                     row.locator(".plan").inner_text())
    assert "weather" in page.locator("#reply").inner_text()
    assert page.evaluate("window.rspp.audio.max") > 0.01
    assert not page.evaluate("window.rspp.errors")
    page.screenshot(path=str(tmp_path / f"talk_{transport}.png"), full_page=True)


def test_barge_in_aborts_the_turn_and_clears_playback(
    served: ServeProcess, browser: Callable[..., Any], spoken: dict[str, Path], tmp_path: Path
) -> None:
    wav = _with_silence(spoken["question"], tmp_path / "question.wav", 20.0)
    pcm, rate = read_wav(spoken["interrupt"])
    page = browser(wav)
    page.add_init_script(MIXER)
    _talk(page, served.url)
    page.wait_for_function("window.rspp.audio.loud >= 10")  # the reply is playing
    page.evaluate("([b64, rate]) => window.__say(b64, rate)",
                  [base64.b64encode(pcm).decode(), rate])
    page.wait_for_function("window.rspp.clears >= 1")
    page.locator("#barge.on").wait_for()
    first = page.evaluate("window.rspp.events.find(e => e.type === 'clear').turn_id")
    row = page.locator(f"article.turn[data-turn='{first}']")
    row.locator(".track [data-mark=abort]").wait_for()
    assert "outcome-abort" in (row.get_attribute("class") or "")
    assert row.locator(".track [data-fence]").count() >= 1  # the cancel/fence events
    aborted = page.evaluate(f"window.rspp.events.filter(e => e.type === 'turn' && "
                            f"e.turn_id === '{first}' && e.state === 'abort')")
    assert aborted and aborted[0]["reason"]
    # playback is cleared: in the second after the clear no reply audio plays (the user is
    # still speaking; what was in flight when the clear was sent drains within ~200 ms)
    page.wait_for_function("performance.now() > window.rspp.clearedAt + 1200")
    late = page.evaluate("window.rspp.audio.loudAt.filter(t => t > window.rspp.clearedAt + 250 "
                         "&& t < window.rspp.clearedAt + 1200).length")
    assert late == 0, late
    # the barge-in is a turn of its own: a second row appears
    page.locator("article.turn").nth(1).wait_for()
    page.screenshot(path=str(tmp_path / "barge_in.png"), full_page=True)
    # the session's recorded timeline, listed by the server and drawn by the same viewer
    session = page.evaluate("window.rspp.events.find(e => e.type === 'ready').session_id")
    page.click("#hangup")
    page.goto(f"{served.url}/timelines")
    page.click(f"a[href='/timelines/{session}']")
    page.locator(f"article.turn[data-turn='{first}'] .track [data-mark=abort]").wait_for()
    page.screenshot(path=str(tmp_path / "recorded.png"), full_page=True)


def test_page_says_what_went_wrong_in_words(
    served: ServeProcess, browser: Callable[..., Any], tmp_path: Path
) -> None:
    status = "document.getElementById('status')"
    # the microphone is refused: the session opened, the page says so and hangs up
    page = browser(microphone=False)
    page.goto(f"{served.url}/")
    page.wait_for_function(f"{status}.textContent.startsWith('ready')")
    page.click("#talk")
    page.wait_for_function(f"{status}.className === 'error'")
    assert page.locator("#status").inner_text().startswith("Microphone refused")
    assert page.locator("#talk").is_enabled()
    # a token the server refuses (a route pasted into the URL)
    page.goto(f"{served.url}/?session=s-browser-bad&token=not-a-token")
    page.wait_for_function(f"{status}.textContent.startsWith('ready')")
    page.check("#force-ws")
    page.click("#talk")
    page.wait_for_function(f"{status}.className === 'error'")
    refused = page.locator("#status").inner_text()
    assert "4401" in refused or "refused" in refused.lower() or "token_invalid" in refused, refused
    # the server cannot be reached when the session is asked for
    page.goto(f"{served.url}/")
    page.wait_for_function(f"{status}.textContent.startsWith('ready')")
    page.route("**/web/session", lambda route: route.abort())
    page.click("#talk")
    page.wait_for_function(f"{status}.className === 'error'")
    assert page.locator("#status").inner_text().startswith("Server unreachable")
    page.screenshot(path=str(tmp_path / "errors.png"), full_page=True)


def test_timeline_viewer_draws_a_recorded_barge_in(
    rspp_cli: RsppCli, browser: Callable[..., Any], spoken: dict[str, Path], tmp_path: Path
) -> None:
    _chromium()
    timeline = tmp_path / "barge.jsonl"
    run = rspp_cli.run(str(VOICE), "--input", str(spoken["question"]), "--barge-in",
                       f"{spoken['interrupt']}@0.5", "--timeline", str(timeline),
                       "--record-level", "L2")
    assert run.returncode == 0, run.stderr
    # a replay against a changed spec diverges (other plans): its report marks the turns
    changed = tmp_path / "changed.yaml"
    changed.write_text(VOICE.read_text().replace("silence_ms: 500", "silence_ms: 520"))
    report = tmp_path / "replay.json"
    replay = rspp_cli("replay", str(timeline), "--spec", str(changed), "--mode", "playback",
                      "--report", str(report))
    assert replay.returncode == 1 and report.exists(), replay.stdout + replay.stderr
    html = tmp_path / "barge.html"
    wrote = rspp_cli("timeline", "view", str(timeline), "--report", str(report),
                     "--html", str(html))
    assert wrote.returncode == 0, wrote.stderr
    proc = subprocess.Popen(
        [sys.executable, "-c", "from rspp.cli import main; main()", "timeline", "view",
         str(timeline), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        m = re.search(r"(http://\S+/)", banner)
        assert m, banner + (proc.stderr.read() if proc.poll() is not None else "")
        for source, diverged in ((m.group(1), 0), (html.as_uri(), 2)):  # served; one file
            page = browser()
            page.goto(source)
            rows = page.locator("article.turn")
            rows.nth(1).wait_for()
            assert rows.count() == 2
            assert "outcome-abort" in (rows.nth(0).get_attribute("class") or "")
            assert rows.nth(0).locator(".track [data-mark=abort]").count() == 1
            assert "outcome-commit" in (rows.nth(1).get_attribute("class") or "")
            assert rows.nth(0).locator("[data-fence=barge_in]").count() >= 1
            assert page.locator("article.turn.diverged").count() == diverged
            if diverged:
                assert "PLAN: plan_hash differs" in rows.nth(0).locator(".findings").inner_text()
        page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
