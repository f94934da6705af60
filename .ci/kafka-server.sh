#!/usr/bin/env bash
# Installs and starts Tansu 0.6.0 (crates.io: tansu, an Apache Kafka protocol compatible broker
# written in Rust), with in-memory storage, on 127.0.0.1:9092 for tracker-broker's Kafka tests:
# no Apache Kafka installs from the package registries this project's machines reach. It is a
# stand-in; what it does not cover is listed in docs/brokers.md ("Kafka stand-in").
#
# Idempotent: installs once into its own directory (TRACKER_KAFKA_DIR, default
# /var/tmp/tracker-kafka, outside the repo), starts the server unless something already
# accepts connections on the port, and waits until it does.
#
# A first install builds Tansu from source: about an hour on a two-core machine. Later runs
# on the same machine reuse the binary.
#
# Progress goes to stderr; stdout is the bootstrap address, one line:
#   export TRACKER_TEST_KAFKA_URL="$(bash .ci/kafka-server.sh)"
#
# Everything is kept in memory (gone when the server stops). Stop it with:
#   kill "$(cat "$TRACKER_KAFKA_DIR/server.pid")"
set -euo pipefail

VERSION=0.6.0
HOST=127.0.0.1
PORT="${TRACKER_KAFKA_PORT:-9092}"
DIR="${TRACKER_KAFKA_DIR:-/var/tmp/tracker-kafka}"
BIN="$DIR/bin/tansu"
MARKER="$DIR/.installed-tansu-$VERSION-dynostore"
ADDRESS="$HOST:$PORT"

say() { echo "kafka-server.sh: $*" >&2; }
die() {
    say "error: $*"
    if [ -f "$DIR/server.log" ]; then
        say "last lines of $DIR/server.log:"
        tail -n 20 "$DIR/server.log" >&2 || true
    fi
    exit 1
}

listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

for tool in cargo flock nohup setsid; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$DIR"

if listening; then
    say "something already listens on $ADDRESS; using it"
    echo "$ADDRESS"
    exit 0
fi

# One installer at a time.
exec 9>"$DIR/.lock"
flock 9
if [ ! -x "$BIN" ] || [ ! -f "$MARKER" ]; then
    say "installing tansu $VERSION (feature dynostore: in-memory storage) into $DIR; a first build takes long"
    cargo install tansu --version "$VERSION" --locked --features dynostore \
        --root "$DIR" --target-dir "$DIR/target" >&2 || die "cargo install tansu failed"
    touch "$MARKER"
fi

if ! listening; then
    say "starting tansu on $ADDRESS"
    setsid nohup "$BIN" broker \
        --listener-url "tcp://$ADDRESS" \
        --advertised-listener-url "tcp://$ADDRESS" \
        --storage-engine memory://tansu/ \
        >"$DIR/server.log" 2>&1 </dev/null &
    echo $! >"$DIR/server.pid"
fi
flock -u 9

for _ in $(seq 1 60); do
    if listening; then
        echo "$ADDRESS"
        exit 0
    fi
    if [ -f "$DIR/server.pid" ] && ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
        die "tansu exited"
    fi
    sleep 1
done
die "tansu did not accept connections on $ADDRESS within 60 s"
