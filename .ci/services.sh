# Starts the local services the integration tests use and exports their URLs. Sourced by
# .ci/run; also usable by hand: `source .ci/services.sh && start_services`.
# Each run gets fresh databases (`tracker_ci`); other databases are left alone.

wait_for() {
    local what=$1 tries=60
    shift
    until "$@" >/dev/null 2>&1; do
        tries=$((tries - 1))
        if [ "$tries" -le 0 ]; then
            echo "services: $what did not come up" >&2
            return 1
        fi
        sleep 1
    done
}

start_postgres() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        echo "services: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
        wait_for PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
    fi
    psql -q -h 127.0.0.1 -U postgres -d postgres \
        -c 'DROP DATABASE IF EXISTS tracker_ci WITH (FORCE)' \
        -c 'CREATE DATABASE tracker_ci'
    export TRACKER_TEST_POSTGRES_URL="${TRACKER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/tracker_ci}"
}

start_mariadb() {
    if ! mariadb-admin -h 127.0.0.1 -u root ping; then
        echo "services: starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        wait_for MariaDB mariadb-admin -h 127.0.0.1 -u root ping
    fi
    mariadb -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS tracker_ci; CREATE DATABASE tracker_ci'
    export TRACKER_TEST_MYSQL_URL="${TRACKER_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/tracker_ci}"
}

start_redis() {
    if ! redis-cli -h 127.0.0.1 -p 6379 ping; then
        echo "services: starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
        wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping
    fi
    export TRACKER_TEST_REDIS_URL="${TRACKER_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
    # A local 3-master cluster on 7101-7103 (its own ports and directory).
    eval "$(bash .ci/redis-cluster.sh)"
}

start_mongo() {
    # The CongoDB stand-in (no MongoDB server can be installed here); see crates/tracker-mongo.
    local url
    url=$(bash .ci/mongo-server.sh)
    export TRACKER_TEST_MONGO_URL="${TRACKER_TEST_MONGO_URL:-$url}"
}

start_dynamo() {
    # moto's DynamoDB server, single-threaded (DynamoDB Local cannot be had here); see
    # crates/tracker-dynamo. Static credentials for the local server only.
    eval "$(bash .ci/dynamo-server.sh)"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-tracker-store-test}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-tracker-store-test}"
    export AWS_REGION="${AWS_REGION:-us-east-1}"
}

start_kafka() {
    # The Tansu stand-in for Kafka (no Kafka server installs from the reachable registries);
    # see crates/tracker-broker and docs/brokers.md. Built once per machine, then reused.
    local address
    address=$(bash .ci/kafka-server.sh)
    export TRACKER_TEST_KAFKA_URL="${TRACKER_TEST_KAFKA_URL:-$address}"
    # RabbitMQ runs as a system service on these machines (guest/guest).
    export TRACKER_TEST_RABBITMQ_URL="${TRACKER_TEST_RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
}

start_services() {
    start_kafka
    start_postgres
    start_mariadb
    start_redis
    start_mongo
    start_dynamo
}
