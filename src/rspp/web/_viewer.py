"""The timeline viewer: a recorded timeline as the page's per-turn rows, in one HTML file.

:func:`timeline_rows` reads a timeline file (JSON Lines or MessagePack) into
:class:`~rspp.observability.TurnRow` values, marking the turns a replay divergence
report (``rspp replay --report``) names; :func:`timeline_html` renders them with the
page's own renderer (``static/timeline.js``) and style, inlined: the file works
offline, from disk or served by ``rspp timeline view`` and ``rspp serve``'s
``/timelines``.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from rspp.observability import TimelineFormatError, TurnRow, iter_timeline, turn_rows

__all__ = ["divergences_by_turn", "timeline_html", "timeline_rows"]

_STATIC = Path(__file__).resolve().parent / "static"


def divergences_by_turn(report: Path) -> dict[str, list[str]]:
    """Turn id -> the findings of a replay report (``rspp replay --report``) about it."""
    doc = json.loads(report.read_text())
    out: dict[str, list[str]] = defaultdict(list)
    for f in doc.get("findings") or []:
        tid = f.get("turn_id")
        if isinstance(tid, str):
            out[tid].append(f"{f.get('class', '?')}: {f.get('message', '')}")
    return dict(out)


def timeline_rows(path: Path, report: Path | None = None) -> tuple[list[TurnRow], list[str]]:
    """The turn rows of a timeline file and the problems met reading it (bad lines)."""
    problems: list[str] = []
    lines = []
    for item in iter_timeline(path, payloads=True):
        if isinstance(item, TimelineFormatError):
            problems.append(str(item))
        else:
            lines.append(item)
    return turn_rows(lines, diverged=divergences_by_turn(report) if report else {}), problems


def _script_json(value: object) -> str:
    """JSON safe inside a ``<script>`` element."""
    return msgspec.json.encode(value).decode().replace("</", "<\\/")


def timeline_html(rows: list[TurnRow], *, title: str, problems: Sequence[str] = ()) -> str:
    """A self-contained viewer page of ``rows`` (renderer and style inlined)."""
    css = (_STATIC / "style.css").read_text()
    js = (_STATIC / "timeline.js").read_text()
    notes = "".join(f"<li>{html.escape(p)}</li>" for p in problems[:20])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RSPP timeline: {html.escape(title)}</title>
<style>{css}</style></head>
<body class="viewer"><header><h1>RSPP timeline</h1><p class="sub">{html.escape(title)}</p>
</header>
<ul class="problems">{notes}</ul>
<section id="timeline" class="timeline" aria-label="turn timeline"></section>
<script type="application/json" id="rows">{_script_json(rows)}</script>
<script type="module">
{js}
const view = new Timeline(document.getElementById("timeline"));
for (const row of JSON.parse(document.getElementById("rows").textContent)) view.update(row);
</script>
</body></html>
"""
