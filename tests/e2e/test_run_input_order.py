"""A node with two inputs takes them in the order the session routed them, in ``rspp run``.

The offline assistant plus a custom async ``captions`` node fed twice by the reply: the
LLM's token stream (``llm.text -> captions.tokens``) and the segmenter's sentences
(``segmenter.text -> captions.sentences``). When the token stream ends (the LLM's
end-of-stream marker) the node publishes the reply's sentences as one caption (an
audit record in the timeline). The segmenter flushes the reply's last sentence while
the LLM's marker is routed to it, before the marker reaches ``captions.tokens``; the
kernel used to serve a node's inputs one after the other (every queued event of the
first input, then the next input), so the marker overtook that sentence and the
caption was published without it (empty for a one-sentence reply).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

CAPTIONS = textwrap.dedent('''
    from rspp import Event, Node


    class Captions(Node):
        """The reply's sentences, published whole when its token stream ends."""

        inputs = ("tokens", "sentences")
        outputs = ("captions",)
        port_types = {"tokens": "text", "sentences": "text", "captions": "text"}

        def __init__(self, ctx, params=None):
            super().__init__(ctx, params)
            self.sentences = []

        async def process(self, event: Event, port: str) -> None:
            if event.kind != "text":
                return None
            eos = bool(event.attrs and event.attrs.get("eos"))
            if port == "sentences" and not eos and str(event.payload or "").strip():
                self.sentences.append(str(event.payload).strip())
            elif port == "tokens" and eos:
                self.ctx.audit("caption:" + " ".join(self.sentences))
                self.sentences = []
            return None
''')


def _spec(directory: Path) -> Path:
    text = (REPO / "pipelines" / "examples" / "voice_assistant.yaml").read_text()
    text = text.replace("  - id: tts\n", "  - id: captions\n    type: python:captions:Captions\n"
                        "  - id: tts\n")
    # the token edge is declared first: its buffer is the node's first input
    text += ("  - {from: llm.text, to: captions.tokens}\n"
             "  - {from: segmenter.text, to: captions.sentences}\n")
    spec = directory / "captions.yaml"
    spec.write_text(text)
    (directory / "captions.py").write_text(CAPTIONS)
    return spec


def test_the_reply_end_marker_never_overtakes_the_last_sentence_on_another_input(
        spoken: dict[str, Path], tmp_path: Path) -> None:
    spec, timeline = _spec(tmp_path), tmp_path / "t.jsonl"
    res = subprocess.run(
        [sys.executable, "-c", "from rspp.cli import main; main()", "run", str(spec),
         "--input", str(spoken["question"]), "--timeline", str(timeline), "--json"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    [turn] = json.loads(res.stdout)["turns"]
    assert turn["terminal"] == "commit" and "weather" in turn["reply"], turn
    captions = [rec["reason"].removeprefix("caption:")
                for rec in (json.loads(x)["record"] for x in timeline.read_text().splitlines())
                if str(rec.get("reason", "")).startswith("caption:")]
    # one caption, the whole reply: its last sentence came before the end of the tokens
    assert captions == [turn["reply"]], (captions, turn["reply"])
