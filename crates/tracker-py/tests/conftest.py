"""Fixtures: one store configuration per backend, in namespaces of this run, removed at the end."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Iterator, Tuple

import pytest

import support

#: Backends the in-process tests run on: (name, the `backend` key's value).
BACKENDS = ["memory", "sqlite", "postgres", "mysql", "redis", "mongo", "dynamo"]


@pytest.fixture(scope="session", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    support.drop_postgres_databases(support.RUN)
    support.drop_mysql_databases(support.RUN)
    support.delete_redis_keys(support.RUN)
    if os.environ.get("TRACKER_TEST_MONGO_URL"):
        import pymongo

        client = pymongo.MongoClient(os.environ["TRACKER_TEST_MONGO_URL"])
        for name in client.list_database_names():
            if name.startswith(support.RUN):
                client.drop_database(name)
    if os.environ.get("TRACKER_TEST_DYNAMO_URL"):
        import boto3

        dynamo = boto3.client(
            "dynamodb",
            endpoint_url=os.environ["TRACKER_TEST_DYNAMO_URL"],
            region_name=os.environ.get("AWS_REGION", "us-east-1"),
        )
        for table in dynamo.list_tables().get("TableNames", []):
            if table.startswith(support.RUN):
                dynamo.delete_table(TableName=table)


def store_keys(backend: str, name: str, tmp_path_factory: Any) -> Dict[str, Any]:
    """The `tracker_store` keys (without `type`) of a fresh namespace of `backend`."""
    namespace = f"{support.RUN}{name}"
    if backend == "memory":
        return {"backend": "memory"}
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / f"{name}.db"
        return {"backend": "sql", "dialect": "sqlite", "db": str(path)}
    if backend == "postgres":
        return {"backend": "sql", **support.postgres_keys(namespace.lower())}
    if backend == "mysql":
        return {"backend": "sql", **support.mysql_keys(namespace.lower())}
    if backend == "redis":
        return {"backend": "redis", **support.redis_keys(namespace)}
    if backend == "mongo":
        return {"backend": "mongod", "url": support.server_url("MONGO"), "db": namespace}
    if backend == "dynamo":
        return {
            "backend": "dynamo",
            "table_name": namespace,
            "region": os.environ.get("AWS_REGION", "us-east-1"),
            "endpoint_url": support.server_url("DYNAMO"),
        }
    raise ValueError(backend)


def _section(request: Any, tmp_path_factory: Any) -> Tuple[str, Dict[str, Any]]:
    name = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]
    return request.param, store_keys(request.param, name, tmp_path_factory)


@pytest.fixture(params=BACKENDS)
def section(request: Any, tmp_path_factory: Any) -> Tuple[str, Dict[str, Any]]:
    """(backend, keys) of a fresh namespace per test."""
    return _section(request, tmp_path_factory)


@pytest.fixture(params=[backend for backend in BACKENDS if backend != "memory"])
def shared_section(request: Any, tmp_path_factory: Any) -> Tuple[str, Dict[str, Any]]:
    """(backend, keys) of a fresh namespace per test, on a backend several processes can
    share (not memory)."""
    return _section(request, tmp_path_factory)
