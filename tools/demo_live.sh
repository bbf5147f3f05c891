#!/usr/bin/env bash
# `make demo`, the live part: start `rspp serve` (embedded: the runtime and a control plane on
# SQLite in one process) on a free port, wait until /readyz says ready, talk to it with
# `rspp talk` (the spoken question in; transcript, reply, reply audio and the per-turn latency
# table out), then stop it with SIGTERM (it drains and exits 0) and keep the session's
# timeline as OUT/timeline.jsonl.
# The server is stopped whatever happens (trap on exit); nothing waits on a fixed sleep:
# readiness is polled with a deadline, and a server that dies early ends the demo at once.
# Usage: tools/demo_live.sh BIN OUT [SPEC]   (BIN: the virtualenv's bin directory)
set -euo pipefail
BIN=${1:?usage: tools/demo_live.sh BIN OUT [SPEC]}
OUT=${2:?usage: tools/demo_live.sh BIN OUT [SPEC]}
SPEC=${3:-pipelines/examples/voice_assistant.yaml}
LOG="$OUT/serve.log"
KEY="demo-$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(12))')"

rm -rf "$OUT/sessions" "$OUT/serve.db" "$OUT/timeline.jsonl"
mkdir -p "$OUT/sessions"
"$BIN/rspp" serve "$SPEC" --port 0 --api-key "$KEY" --db "sqlite:///$OUT/serve.db" \
    --timeline-dir "$OUT/sessions" >"$LOG" 2>&1 &
SERVER=$!
stop_server() {
    if kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
}
trap stop_server EXIT

# Readiness: the banner names the URL, then /readyz answers 200 (polled, 120 s at most).
URL=$("$BIN/python" - "$LOG" "$SERVER" <<'PY'
import os, re, sys, time
import httpx
log, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
url = None
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("rspp serve exited before it was ready:\n" + open(log).read()[-3000:])
    if url is None:
        m = re.search(r"ready on (http://\S+)", open(log).read())
        url = m.group(1) if m else None
    if url is not None:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                print(url)
                sys.exit(0)
        except httpx.TransportError:
            pass
    time.sleep(0.05)  # polling interval of the readiness probe
sys.exit("rspp serve did not become ready within 120 s:\n" + open(log).read()[-3000:])
PY
)
echo "rspp serve is ready on $URL (log: $LOG)"

RSPP_API_KEY="$KEY" "$BIN/rspp" talk --server "$URL" --tenant demo \
    --input "$OUT/question.wav" --output "$OUT/reply.wav"

# Stop it as an operator would: SIGTERM drains (no new sessions, turns finish) and exits 0.
kill -TERM "$SERVER"
STATUS=0
wait "$SERVER" || STATUS=$?
trap - EXIT
if [ "$STATUS" -ne 0 ]; then
    echo "rspp serve exited $STATUS after SIGTERM:" >&2
    tail -n 40 "$LOG" >&2
    exit 1
fi
echo "rspp serve drained and stopped (exit 0)"
set -- "$OUT"/sessions/*.jsonl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "expected one session timeline in $OUT/sessions, found: $*" >&2
    exit 1
fi
cp "$1" "$OUT/timeline.jsonl"
echo "the served session's timeline: $OUT/timeline.jsonl"
