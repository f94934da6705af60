"""Shared helpers of the tests: test servers, namespaces, Rasa processes, comparisons."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import pytest

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS / "project"
CRATE = TESTS.parent
REPOSITORY = CRATE.parent.parent
RASA = str(Path(sys.executable).with_name("rasa"))
#: Unique per test run: every database, key prefix, collection and table the tests create
#: carries it, so runs never see each other's data.
RUN = "tpy" + uuid.uuid4().hex[:10]


def server_url(name: str) -> str:
    """The URL of a test server from ``TRACKER_TEST_<NAME>_URL``; a missing one skips the
    test, or fails it under ``CI=true``."""
    variable = f"TRACKER_TEST_{name}_URL"
    value = os.environ.get(variable)
    if not value:
        message = f"{variable} is not set (source /var/tmp/test-env.sh)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL -------------------------------------------------------------------------


def postgres_keys(database: str) -> Dict[str, Any]:
    """Rasa's SQL keys for a database of the test PostgreSQL server, created if missing."""
    url = urllib.parse.urlparse(server_url("POSTGRES"))
    import psycopg2

    connection = psycopg2.connect(
        host=url.hostname,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.path.lstrip("/") or "postgres",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{database}"')
    connection.close()
    keys: Dict[str, Any] = {
        "dialect": "postgresql",
        "url": url.hostname,
        "port": url.port or 5432,
        "db": database,
        "username": url.username,
    }
    if url.password:
        keys["password"] = url.password
    return keys


def drop_postgres_databases(prefix: str) -> None:
    url = urllib.parse.urlparse(os.environ.get("TRACKER_TEST_POSTGRES_URL", ""))
    if not url.hostname:
        return
    import psycopg2

    connection = psycopg2.connect(
        host=url.hostname,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.path.lstrip("/") or "postgres",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def postgres_query(database: str, sql: str, *args: Any) -> List[tuple]:
    url = urllib.parse.urlparse(server_url("POSTGRES"))
    import psycopg2

    connection = psycopg2.connect(
        host=url.hostname, port=url.port or 5432, user=url.username,
        password=url.password, dbname=database,
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        rows = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows


# --- MySQL / MariaDB --------------------------------------------------------------------


def _mysql(url: urllib.parse.ParseResult, sql: str) -> None:
    """Runs `sql` on the test MySQL/MariaDB server with its command-line client (the Rasa
    environment has no MySQL driver of its own)."""
    command = ["mariadb", "-h", url.hostname or "127.0.0.1", "-P", str(url.port or 3306),
               "-u", url.username or "root", "-e", sql]
    environment = dict(os.environ)
    if url.password:
        environment["MYSQL_PWD"] = urllib.parse.unquote(url.password)
    subprocess.run(command, check=True, env=environment, capture_output=True)


def mysql_keys(database: str) -> Dict[str, Any]:
    """Rasa's SQL keys for a database of the test MySQL/MariaDB server, created if missing."""
    url = urllib.parse.urlparse(server_url("MYSQL"))
    _mysql(url, f"CREATE DATABASE IF NOT EXISTS `{database}`")
    keys: Dict[str, Any] = {
        "dialect": "mysql+pymysql",
        "url": url.hostname,
        "port": url.port or 3306,
        "db": database,
        "username": url.username or "root",
    }
    if url.password:
        keys["password"] = urllib.parse.unquote(url.password)
    return keys


def drop_mysql_databases(prefix: str) -> None:
    url = urllib.parse.urlparse(os.environ.get("TRACKER_TEST_MYSQL_URL", ""))
    if not url.hostname:
        return
    command = ["mariadb", "-h", url.hostname, "-P", str(url.port or 3306),
               "-u", url.username or "root", "-N", "-e",
               f"SELECT schema_name FROM information_schema.schemata "
               f"WHERE schema_name LIKE '{prefix}%'"]
    environment = dict(os.environ)
    if url.password:
        environment["MYSQL_PWD"] = urllib.parse.unquote(url.password)
    listed = subprocess.run(command, check=True, env=environment, capture_output=True, text=True)
    for name in listed.stdout.split():
        _mysql(url, f"DROP DATABASE IF EXISTS `{name}`")


# --- Redis ------------------------------------------------------------------------------


def redis_keys(prefix: str) -> Dict[str, Any]:
    """Rasa's Redis keys with a key prefix of this run (alphanumeric, as Rasa requires)."""
    url = urllib.parse.urlparse(server_url("REDIS"))
    keys: Dict[str, Any] = {"url": url.hostname, "port": url.port or 6379, "key_prefix": prefix}
    if url.password:
        keys["password"] = url.password
    return keys


def redis_client():
    import redis

    return redis.Redis.from_url(server_url("REDIS"), decode_responses=True)


def delete_redis_keys(prefix: str) -> None:
    if not os.environ.get("TRACKER_TEST_REDIS_URL"):
        return
    client = redis_client()
    for key in client.scan_iter(match=prefix + "*", count=1000):
        client.delete(key)


# --- Rasa processes ---------------------------------------------------------------------


def train_model(directory: Path) -> Path:
    """Trains the rules-only test assistant; returns the model file."""
    started = time.monotonic()
    subprocess.run(
        [
            RASA, "train",
            "--config", str(PROJECT / "config.yml"),
            "--domain", str(PROJECT / "domain.yml"),
            "--data", str(PROJECT / "data"),
            "--out", str(directory),
            "--fixed-model-name", "rules",
        ],
        cwd=directory, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    model = directory / "rules.tar.gz"
    assert model.is_file(), "rasa train wrote no model"
    print(f"trained the test model in {time.monotonic() - started:.1f}s")
    return model


def write_yaml(path: Path, data: Dict[str, Any]) -> Path:
    """Writes ``data`` as YAML (JSON is YAML)."""
    path.write_text(json.dumps(data, indent=2))
    return path


class RasaServer:
    """A ``rasa run --enable-api`` process on a free loopback port."""

    def __init__(self, name: str, model: Path, endpoints: Dict[str, Any], directory: Path):
        self.name = name
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.endpoints = write_yaml(self.directory / "endpoints.yml", endpoints)
        self.port = free_port()
        self.log_path = self.directory / "rasa.log"
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                RASA, "run", "--enable-api", "-i", "127.0.0.1", "-p", str(self.port),
                "-m", str(model), "--endpoints", str(self.endpoints),
            ],
            cwd=self.directory, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url + "/status", timeout=2).read()
                # /status answers once the model is loaded.
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise AssertionError(f"{self.name} did not start in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def send(self, sender: str, message: str) -> List[Dict[str, Any]]:
        return http_json(
            self.url + "/webhooks/rest/webhook", {"sender": sender, "message": message}
        )

    def tracker(self, sender: str, include_events: str = "ALL") -> Dict[str, Any]:
        query = urllib.parse.urlencode({"include_events": include_events})
        return http_json(f"{self.url}/conversations/{urllib.parse.quote(sender)}/tracker?{query}")


def http_json(url: str, body: Optional[Dict[str, Any]] = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def start_all(servers: Iterable[RasaServer]) -> None:
    for server in servers:
        server.wait_ready()


# --- Comparisons ------------------------------------------------------------------------

#: Keys whose values differ between two runs of the same conversation.
VOLATILE = {"timestamp", "message_id", "latest_event_time"}


def without_volatile(value: Any) -> Any:
    """``value`` without timestamps and message ids, at any depth."""
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


def tracker_cli(endpoints: Path, *args: str) -> str:
    """Runs the ``tracker`` command of tracker-cli (built once by run-tests.sh)."""
    binary = os.environ.get("TRACKER_CLI")
    if not binary:
        target = os.environ.get("CARGO_TARGET_DIR", str(REPOSITORY / "target"))
        binary = str(Path(target) / "debug" / "tracker")
    if not Path(binary).is_file():
        raise AssertionError(
            f"the tracker CLI is not built at {binary}: run `cargo build -p tracker-cli` "
            "(run-tests.sh does) or set TRACKER_CLI"
        )
    result = subprocess.run(
        [binary, "--quiet", "--endpoints", str(endpoints), *args],
        check=False, capture_output=True, text=True,
    )
    assert result.returncode == 0, f"tracker {' '.join(args)} failed: {result.stderr}"
    return result.stdout
