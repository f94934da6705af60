#!/usr/bin/env bash
# Installs and starts CongoDB, the wire-compatible MongoDB stand-in inside the npm package
# @push.rocks/smartmongo 2.2.0, on 127.0.0.1:27018 for tracker-mongo's tests (no MongoDB
# server can be installed on this project's machines). Idempotent: installs once into its
# own directory (TRACKER_CONGODB_DIR, default /var/tmp/tracker-congodb, outside the repo),
# starts the server unless it is already running, and waits until it accepts connections.
#
# Progress goes to stderr; stdout is the URL, one line:
#   export TRACKER_TEST_MONGO_URL="$(bash .ci/mongo-server.sh)"
#
# The stand-in keeps everything in memory (gone when it stops) and differs from MongoDB in
# ways crates/tracker-mongo/README.md lists. Stop it with: kill "$(cat "$DIR/server.pid")".
set -euo pipefail

VERSION=2.2.0
# shasum of the registry's tarball of that version (npm pack prints it).
TARBALL_SHA1=8e8d6fe2de716cc16385447467cc47ce35e10af2
HOST=127.0.0.1
PORT="${TRACKER_CONGODB_PORT:-27018}"
DIR="${TRACKER_CONGODB_DIR:-/var/tmp/tracker-congodb}"
URL="mongodb://$HOST:$PORT/?directConnection=true"
HERE="$(cd "$(dirname "$0")" && pwd)"
PACKAGE="$DIR/node_modules/@push.rocks/smartmongo"
MARKER="$DIR/.installed-smartmongo-$VERSION"

say() { echo "mongo-server.sh: $*" >&2; }
die() {
    say "error: $*"
    if [ -f "$DIR/server.log" ]; then
        say "last lines of $DIR/server.log:"
        tail -n 20 "$DIR/server.log" >&2 || true
    fi
    exit 1
}

for tool in node npm tar flock sha1sum nohup; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install nodejs npm tar util-linux)"
done

# Whether something accepts TCP connections on the port.
listening() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Whether the server this script started is alive.
ours_running() {
    local pid
    [ -f "$DIR/server.pid" ] || return 1
    pid="$(cat "$DIR/server.pid")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "server.mjs"
}

mkdir -p "$DIR"
# One invocation at a time (e.g. two test runs starting together).
exec 9>"$DIR/lock"
flock 9

if ours_running && listening; then
    say "CongoDB already running on $HOST:$PORT (pid $(cat "$DIR/server.pid"))"
    echo "$URL"
    exit 0
fi
if listening; then
    die "something else listens on $HOST:$PORT; stop it or set TRACKER_CONGODB_PORT"
fi

# Install, exactly as verified for this package (a plain `npm install` of 2.2.0 fails, and
# newer versions do not install): its runtime dependencies first, then the package itself
# unpacked from its tarball without its (unneeded, uninstallable) dependency tree.
if [ ! -f "$MARKER" ] || [ ! -f "$PACKAGE/dist_ts/congodb/index.js" ]; then
    say "installing @push.rocks/smartmongo@$VERSION (CongoDB) into $DIR"
    rm -rf "$DIR/node_modules" "$DIR/package.json" "$DIR/package-lock.json" "$MARKER"
    (
        cd "$DIR"
        npm install --no-audit --no-fund bson@^6.10.0 mingo@^7.2.0 @push.rocks/smartfs@^1.3.1 \
            @push.rocks/smartpath@^5.0.11 @push.rocks/smartpromise@^4.0.3 @push.rocks/smartrx@^3.0.0 >&2
        rm -f push.rocks-smartmongo-*.tgz
        npm pack --loglevel=error "@push.rocks/smartmongo@$VERSION" >/dev/null
        echo "$TARBALL_SHA1  push.rocks-smartmongo-$VERSION.tgz" | sha1sum -c --quiet - >&2 ||
            exit 1
        mkdir -p "$PACKAGE"
        tar -xzf "push.rocks-smartmongo-$VERSION.tgz" -C "$PACKAGE" --strip-components=1
        rm -f "push.rocks-smartmongo-$VERSION.tgz"
    ) || die "installing CongoDB failed"
    [ -f "$PACKAGE/dist_ts/congodb/index.js" ] || die "the package has no dist_ts/congodb/index.js"
    touch "$MARKER"
fi

# The server script lives in the install directory, so a running server does not depend on
# the checkout it was started from.
cp "$HERE/congodb/server.mjs" "$DIR/server.mjs"

say "starting CongoDB on $HOST:$PORT (log: $DIR/server.log)"
# nohup, not setsid: setsid forks when it is a process group leader (a shell with job
# control), and `$!` would then name a process that has already exited.
nohup node "$DIR/server.mjs" "$DIR" "$PORT" >"$DIR/server.log" 2>&1 </dev/null 9>&- &
echo $! >"$DIR/server.pid"

for _ in $(seq 120); do
    if listening; then
        say "CongoDB is up on $HOST:$PORT (pid $(cat "$DIR/server.pid"))"
        echo "$URL"
        exit 0
    fi
    # Only whether the process lives: until the forked shell has exec'd node, its command
    # line is still this script's, so `ours_running` would call a starting server dead.
    kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null || die "CongoDB exited during start-up"
    sleep 0.25
done
die "CongoDB did not accept connections on $HOST:$PORT within 30 s"
