#!/usr/bin/env bash
# `make test-loaded`: the e2e, integration and failure-matrix suites with two CPU-burning processes
# (stress-ng --cpu 2) beside them, so no test depends on an idle machine.
# stress-ng is installed with apt-get when missing and running as root; it is always
# stopped afterwards (trap), whatever the tests do.
set -uo pipefail
PYTEST="${1:-.venv/bin/pytest}"
if ! command -v stress-ng >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get -y install stress-ng >/dev/null || { apt-get update >/dev/null && apt-get -y install stress-ng >/dev/null; }
    fi
fi
if ! command -v stress-ng >/dev/null 2>&1; then
    echo "test-loaded: stress-ng is not installed; install it (apt-get install stress-ng, as root) and re-run" >&2
    exit 2
fi
stress-ng --cpu 2 --quiet &
STRESS=$!
trap 'kill "$STRESS" 2>/dev/null; wait "$STRESS" 2>/dev/null' EXIT INT TERM
"$PYTEST" -q -p no:cacheprovider -n 4 --dist loadfile tests/integration tests/e2e tests/failure_matrix
