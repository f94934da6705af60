"""Real Rasa 3.6 processes (`rasa run --enable-api`) with this package's store in
`endpoints.yml`, on SQLite, PostgreSQL and Redis.

Per backend, three processes: two on this package's store, sharing one store and each with a
file event broker, and one on Rasa's own store of the backend. The same conversations go to
one of ours and to Rasa's; each is then checked through Rasa's `GET /conversations/<id>/
tracker`, through the `tracker show` command of tracker-cli, against the event broker's
output, and against Rasa's own store (the same events apart from timestamps and ids). Then
both of our processes take messages for the same conversations at the same time, without a
shared lock store: nothing may be lost or written twice.
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import support

CLASS = "tracker_store.RasaTrackerStore"
BACKENDS = ["sqlite", "postgres", "redis"]
#: Rasa's own store type for each backend.
RASA_TYPE = {"sqlite": "sql", "postgres": "sql", "redis": "redis"}
CONVERSATIONS = 4
ROUNDS = 6


def script(index: int) -> List[str]:
    """The messages of conversation `index`: two sessions, slots, a restart."""
    return [
        "/greet",
        f'/inform{{"city": "city-{index}-1"}}',
        "/session_start",
        f'/inform{{"city": "city-{index}-2"}}',
        "/restart",
        "/greet",
        "/goodbye",
    ]


def rasa_keys(backend: str, name: str, directory: Path) -> Dict[str, Any]:
    """The keys of Rasa's own store of `backend` (no `type`), in a namespace of this run."""
    if backend == "sqlite":
        return {"dialect": "sqlite", "db": str(directory / f"{name}.db")}
    if backend == "postgres":
        return support.postgres_keys(f"{support.RUN}srv{name}")
    if backend == "redis":
        return support.redis_keys(f"{support.RUN}srv{name}")
    raise ValueError(backend)


class Deployment:
    def __init__(self, backend: str, model: Path, directory: Path) -> None:
        self.backend = backend
        self.directory = directory
        self.ours_keys = rasa_keys(backend, "ours", directory)
        self.rasa_keys = rasa_keys(backend, "rasa", directory)
        ours = {"type": CLASS, "backend": RASA_TYPE[backend], **self.ours_keys}
        self.broker_files = [directory / "ours-a.events", directory / "ours-b.events"]
        self.a = support.RasaServer(
            "ours-a",
            model,
            {
                "tracker_store": ours,
                "event_broker": {"type": "file", "path": str(self.broker_files[0])},
            },
            directory,
        )
        self.b = support.RasaServer(
            "ours-b",
            model,
            {
                "tracker_store": ours,
                "event_broker": {"type": "file", "path": str(self.broker_files[1])},
            },
            directory,
        )
        self.rasa = support.RasaServer(
            "rasa-own",
            model,
            {"tracker_store": {"type": RASA_TYPE[backend], **self.rasa_keys}},
            directory,
        )
        # tracker-cli reads the same store with the backend as `type`.
        self.cli_endpoints = support.write_yaml(
            directory / "cli-endpoints.yml",
            {"tracker_store": {"type": RASA_TYPE[backend], **self.ours_keys}},
        )

    @property
    def servers(self) -> List[support.RasaServer]:
        return [self.a, self.b, self.rasa]

    def broker_events(self) -> List[Dict[str, Any]]:
        events: List[Dict[str, Any]] = []
        for path in self.broker_files:
            if path.exists():
                events.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        return events


@pytest.fixture(scope="session")
def model(tmp_path_factory: Any) -> Path:
    return support.train_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module", params=BACKENDS)
def deployment(request: Any, model: Path, tmp_path_factory: Any) -> Iterator[Deployment]:
    deployment = Deployment(request.param, model, tmp_path_factory.mktemp(request.param))
    started = time.monotonic()
    try:
        # The first process creates the schema; the second starts once it is there.
        deployment.a.wait_ready()
        support.start_all(deployment.servers)
        print(f"{request.param}: three Rasa processes up in {time.monotonic() - started:.1f}s")
        yield deployment
    finally:
        for server in deployment.servers:
            server.stop()


def test_conversations_match_rasas_own_store(deployment: Deployment) -> None:
    ids = [f"conv-{index}" for index in range(CONVERSATIONS)]

    def talk(index: int) -> None:
        for message in script(index):
            ours_reply = deployment.a.send(ids[index], message)
            rasa_reply = deployment.rasa.send(ids[index], message)
            assert ours_reply == rasa_reply, message

    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        list(pool.map(talk, range(CONVERSATIONS)))

    for sender in ids:
        ours = deployment.a.tracker(sender)
        theirs = deployment.rasa.tracker(sender)
        assert ours["events"], sender
        assert support.without_volatile(ours["events"]) == support.without_volatile(
            theirs["events"]
        ), sender
        for key in ("slots", "paused", "active_loop", "latest_action_name", "latest_message"):
            assert support.without_volatile(ours[key]) == support.without_volatile(
                theirs[key]
            ), (sender, key)
        # Both processes read the same store.
        assert deployment.b.tracker(sender) == ours
        # The default view (events after the restart) too.
        assert support.without_volatile(
            deployment.a.tracker(sender, "AFTER_RESTART")
        ) == support.without_volatile(deployment.rasa.tracker(sender, "AFTER_RESTART"))


def test_tracker_cli_shows_what_rasa_shows(deployment: Deployment) -> None:
    for index in range(CONVERSATIONS):
        sender = f"conv-{index}"
        shown = json.loads(
            support.tracker_cli(
                deployment.cli_endpoints,
                "--domain",
                str(support.PROJECT / "domain.yml"),
                "show",
                sender,
                "--include-events",
                "ALL",
            )
        )
        rasa = deployment.a.tracker(sender)
        assert shown["events"] == rasa["events"], sender
        assert shown["slots"] == rasa["slots"], sender
        assert shown["latest_message"] == rasa["latest_message"], sender
    listed = support.tracker_cli(deployment.cli_endpoints, "list", "--all")
    for index in range(CONVERSATIONS):
        assert f"conv-{index}" in listed


def test_the_event_broker_got_each_stored_event_once(deployment: Deployment) -> None:
    published = collections.defaultdict(list)
    for event in deployment.broker_events():
        published[event.pop("sender_id")].append(event)
    for index in range(CONVERSATIONS):
        sender = f"conv-{index}"
        assert published[sender] == deployment.a.tracker(sender)["events"], sender


def test_two_processes_without_a_lock_lose_and_duplicate_nothing(
    deployment: Deployment,
) -> None:
    ids = [f"race-{index}" for index in range(CONVERSATIONS)]
    for sender in ids:
        deployment.a.send(sender, "/greet")
    sent: Dict[str, List[str]] = {sender: ["/greet"] for sender in ids}

    def message(sender: str, round_: int, process: str) -> str:
        return f'/inform{{"city": "{sender}-{round_}-{process}"}}'

    with ThreadPoolExecutor(max_workers=2 * CONVERSATIONS) as pool:
        for round_ in range(ROUNDS):
            futures = []
            for sender in ids:
                for process, server in (("a", deployment.a), ("b", deployment.b)):
                    text = message(sender, round_, process)
                    sent[sender].append(text)
                    futures.append(pool.submit(server.send, sender, text))
            for future in futures:
                assert future.result(), "every message gets a reply"

    stored_events = {}
    for sender in ids:
        tracker = deployment.a.tracker(sender)
        events = tracker["events"]
        stored_events[sender] = events
        texts = [event["text"] for event in events if event["event"] == "user"]
        # Every message once: nothing lost, nothing written twice.
        assert collections.Counter(texts) == collections.Counter(sent[sender]), sender
        replies = [e["text"] for e in events if e["event"] == "bot" and e["text"] == "Noted."]
        assert len(replies) == 2 * ROUNDS, sender
        as_text = [json.dumps(event, sort_keys=True) for event in events]
        assert len(set(as_text)) == len(as_text), f"{sender}: an event is stored twice"
        assert deployment.b.tracker(sender)["events"] == events

    # The broker of the two processes together got exactly the stored events.
    published = collections.defaultdict(list)
    for event in deployment.broker_events():
        published[event.pop("sender_id")].append(json.dumps(event, sort_keys=True))
    for sender in ids:
        stored = [json.dumps(event, sort_keys=True) for event in stored_events[sender]]
        assert collections.Counter(published[sender]) == collections.Counter(stored), sender

    # The race did happen: the processes appended after each other's events.
    warnings = deployment.a.log().count("changed by another writer") + deployment.b.log().count(
        "changed by another writer"
    )
    assert warnings > 0, "no concurrent save was exercised"
    print(f"{deployment.backend}: {warnings} saves appended after another process's events")


def test_a_wrong_configuration_stops_rasa(model: Path, tmp_path: Path) -> None:
    server = support.RasaServer(
        "bad-config",
        model,
        {"tracker_store": {"type": CLASS, "backend": "sql", "dailect": "sqlite"}},
        tmp_path,
    )
    try:
        server.process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.stop()
        pytest.fail("Rasa kept running with a wrong tracker store configuration")
    finally:
        server.stop()
    log = server.log()
    assert server.process.returncode != 0
    assert "dailect" in log
    assert "InMemoryTrackerStore" not in log
