#!/usr/bin/env bash
# Starts a local 3-master Redis Cluster on 127.0.0.1:7101-7103 for tracker-redis's tests, or
# reuses it when it is already up and healthy. Idempotent; touches only its own ports and its
# own directory (TRACKER_REDIS_CLUSTER_DIR, default /tmp/tracker-redis-cluster).
#
# Progress goes to stderr; stdout is one line to evaluate:
#   eval "$(.ci/redis-cluster.sh)"
# which exports TRACKER_TEST_REDIS_CLUSTER_URL.
set -euo pipefail

PORTS=(7101 7102 7103)
BASE="${TRACKER_REDIS_CLUSTER_DIR:-/tmp/tracker-redis-cluster}"
URL="redis-cluster://127.0.0.1:7101?node=127.0.0.1:7102&node=127.0.0.1:7103"

say() { echo "redis-cluster.sh: $*" >&2; }
die() {
    say "error: $*"
    for port in "${PORTS[@]}"; do
        if [ -f "$BASE/$port/redis.log" ]; then
            say "last lines of $BASE/$port/redis.log:"
            tail -n 5 "$BASE/$port/redis.log" >&2 || true
        fi
    done
    exit 1
}

for tool in redis-server redis-cli; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install redis-server)"
done

cli() {
    local port="$1"
    shift
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# A field of CLUSTER INFO on one node; empty when the node does not answer.
info_field() {
    cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

healthy() {
    local port
    for port in "${PORTS[@]}"; do
        [ "$(info_field "$port" cluster_state)" = ok ] || return 1
        [ "$(info_field "$port" cluster_known_nodes)" = "${#PORTS[@]}" ] || return 1
        [ "$(info_field "$port" cluster_slots_assigned)" = 16384 ] || return 1
    done
}

wait_healthy() {
    local tries="$1"
    for _ in $(seq "$tries"); do
        healthy && return 0
        sleep 0.5
    done
    return 1
}

finish() {
    say "cluster is up on 127.0.0.1:${PORTS[0]}-${PORTS[-1]}"
    echo "export TRACKER_TEST_REDIS_CLUSTER_URL='$URL'"
    exit 0
}

if healthy; then
    say "cluster already running and healthy"
    finish
fi

# Start the nodes that are not answering.
for port in "${PORTS[@]}"; do
    if [ "$(cli "$port" ping 2>/dev/null | tr -d '\r')" = PONG ]; then
        continue
    fi
    dir="$BASE/$port"
    mkdir -p "$dir"
    say "starting redis-server on 127.0.0.1:$port ($dir)"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
        --daemonize yes --save "" --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null ||
        die "redis-server did not start on port $port"
done
for port in "${PORTS[@]}"; do
    up=""
    for _ in $(seq 40); do
        if [ "$(cli "$port" ping 2>/dev/null | tr -d '\r')" = PONG ]; then
            up=yes
            break
        fi
        sleep 0.25
    done
    [ -n "$up" ] || die "nothing answers PING on 127.0.0.1:$port"
    [ -n "$(info_field "$port" cluster_state)" ] ||
        die "127.0.0.1:$port is a Redis without cluster support; stop it or free the port"
done

# Nodes restarted from their nodes.conf rejoin their cluster by themselves.
fresh=yes
for port in "${PORTS[@]}"; do
    if [ "$(info_field "$port" cluster_known_nodes)" != 1 ]; then
        fresh=""
    fi
done
if [ -z "$fresh" ] && wait_healthy 20; then
    finish
fi

# Otherwise (re)create the cluster: every node must be empty and know only itself.
for port in "${PORTS[@]}"; do
    if [ "$(info_field "$port" cluster_known_nodes)" != 1 ] ||
        [ "$(info_field "$port" cluster_slots_assigned)" != 0 ]; then
        say "resetting the stale cluster state of 127.0.0.1:$port"
        cli "$port" flushall >/dev/null || die "FLUSHALL failed on port $port"
        cli "$port" cluster reset hard >/dev/null || die "CLUSTER RESET failed on port $port"
    fi
done
nodes=()
for port in "${PORTS[@]}"; do
    nodes+=("127.0.0.1:$port")
done
say "creating the cluster"
timeout 60 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >&2 ||
    die "redis-cli --cluster create failed"
wait_healthy 60 || die "the cluster did not reach cluster_state:ok"
finish
