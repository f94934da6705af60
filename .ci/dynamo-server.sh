#!/usr/bin/env bash
# Starts moto's DynamoDB server on 127.0.0.1:8000 for tracker-dynamo's tests, or does nothing
# when it is already up. Idempotent.
#
# moto runs SINGLE-THREADED on purpose: its default threaded server does not apply concurrent
# TransactWriteItems atomically and loses updates, so the conformance suite's concurrent
# writers would see wrong results that real DynamoDB never gives.
#
# The venv lives outside the repository (TRACKER_MOTO_VENV, default /var/tmp/tracker-moto-venv),
# the log in /var/tmp/tracker-moto.log. Progress goes to stderr; stdout is one line to evaluate:
#   eval "$(bash .ci/dynamo-server.sh)"
# which exports TRACKER_TEST_DYNAMO_URL (plain `bash .ci/dynamo-server.sh` works too).
set -euo pipefail

HOST=127.0.0.1
PORT="${TRACKER_MOTO_PORT:-8000}"
URL="http://$HOST:$PORT"
VENV="${TRACKER_MOTO_VENV:-/var/tmp/tracker-moto-venv}"
LOG="${TRACKER_MOTO_LOG:-/var/tmp/tracker-moto.log}"
PIDFILE="${TRACKER_MOTO_PIDFILE:-/var/tmp/tracker-moto.pid}"
REQUIREMENTS="$(cd "$(dirname "$0")" && pwd)/dynamo-requirements.txt"
MOTO_VERSION=5.2.5

say() { echo "dynamo-server.sh: $*" >&2; }
die() {
    say "error: $*"
    if [ -f "$LOG" ]; then
        say "last lines of $LOG:"
        tail -n 20 "$LOG" >&2 || true
    fi
    exit 1
}

# A DynamoDB ListTables call, as the SDK sends it (moto does not check signatures): succeeds
# only when a DynamoDB API answers on the port, not just any HTTP server.
answers() {
    curl -fsS --max-time 5 -o /dev/null -X POST "$URL/" \
        -H 'Content-Type: application/x-amz-json-1.0' \
        -H 'X-Amz-Target: DynamoDB_20120810.ListTables' \
        -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0' \
        -d '{}' 2>/dev/null
}

finish() {
    echo "export TRACKER_TEST_DYNAMO_URL=$URL"
}

if answers; then
    say "a DynamoDB API already answers on $URL"
    finish
    exit 0
fi

command -v curl >/dev/null || die "curl not found (Debian: apt-get install curl)"
command -v python3 >/dev/null || die "python3 not found"

installed() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$MOTO_VERSION" <<'PY' >/dev/null 2>&1
import sys
import flask, flask_cors, moto, werkzeug  # noqa: F401
from moto.dynamodb import models  # noqa: F401  (the [dynamodb] extra's dependencies)
sys.exit(0 if moto.__version__ == sys.argv[1] else 1)
PY
}

if ! installed; then
    say "installing moto $MOTO_VERSION into $VENV"
    python3 -m venv "$VENV" >&2 || die "cannot create the venv $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2 \
        || die "pip install -r $REQUIREMENTS failed"
    installed || die "moto $MOTO_VERSION is not importable from $VENV after installing"
fi

# moto runs from moto_server.py beside this script, single-threaded and with patches
# described there that keep it fast and small without changing what it answers.
say "starting moto's server (single-threaded) on $URL, log $LOG"
nohup "$VENV/bin/python" "$(cd "$(dirname "$0")" && pwd)/moto_server.py" "$HOST" "$PORT" \
    >"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

for _ in $(seq 120); do
    if answers; then
        say "moto answers on $URL (pid $(cat "$PIDFILE"))"
        finish
        exit 0
    fi
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        die "moto's server exited"
    fi
    sleep 0.5
done
die "moto did not answer on $URL within 60 s"
