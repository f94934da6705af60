"""moto's DynamoDB server for tracker-dynamo's tests, single-threaded, with two patches.

    python moto_server.py HOST PORT

Single-threaded: moto's threaded server does not apply concurrent TransactWriteItems
atomically and loses updates; one request at a time makes every request atomic, as DynamoDB
guarantees for transactions.

Patch 1 (TRACKER_MOTO_TRACK_INSTANCES=1 turns it off): moto keeps every model object it ever
creates in a per-class list (`instances_tracked`, for its dashboard), including the copy of a
table it takes for every TransactWriteItems; without the patch one run of the conformance
suite grows the server past 4 GB. Nothing else uses the tracking.

Patch 2 (TRACKER_MOTO_FAST_TRANSACTIONS=0 turns it off): for every TransactWriteItems moto
deep-copies each table the transaction touches, to restore it if the transaction is
cancelled, which makes a transaction cost time proportional to the whole table (seconds
for a table of a few thousand items). The patch keeps a copy of only the items the
transaction touches, taken before any of them is changed, and puts exactly those back when
the transaction fails. The outcome is the same: a cancelled transaction leaves every item as
it was, a successful one applies all its actions.

Patch 3 (TRACKER_MOTO_FAST_QUERIES=0 turns it off): moto answers every Query on a table's
key by sorting every item of the table, so reading a conversation page by page costs time
proportional to the whole table per page. The patch gives that Query only the items of the
queried partition; it then filters and sorts them exactly as before, so the results are the
same.
"""

import copy
import os
import sys

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table


def stop_tracking_instances():
    from moto.core.model_instances import model_data

    class Untracked(list):
        def append(self, item):
            pass

    for model in model_data["dynamodb"].values():
        model.instances_tracked = Untracked()


class _TablesNotCopied:
    """Stands in for the `copy` module inside moto's DynamoDB backend: deep copies of whole
    tables return the table itself (the item-level undo log below restores what changed);
    everything else is the real `copy`."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def item_level_rollback():
    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        undo = []
        for action in transact_items:
            try:
                _, op = next(iter(action.items()))
                table = self.tables[op["TableName"]]
                if "Item" in op:
                    attrs = op["Item"]
                    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    key = op["Key"]
                hash_key, range_key = self.get_keys_value(table, key)
            except Exception:
                # Malformed: the original rejects it before changing anything.
                continue
            before = copy.deepcopy(table.get_item(hash_key, range_key))
            undo.append((table, hash_key, range_key, before))
        try:
            return original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, before in reversed(undo):
                if before is None:
                    table.delete_item(hash_key, range_key)
                elif range_key is not None:
                    table.items[hash_key][range_key] = before
                else:
                    table.items[hash_key] = before
            raise

    dynamodb_models.copy = _TablesNotCopied()
    DynamoDBBackend.transact_write_items = transact_write_items


def partition_queries():
    original = Table.query

    def query(self, hash_key, *args, **kwargs):
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name is not None or hash_key is None or self.range_key_attr is None:
            return original(self, hash_key, *args, **kwargs)
        partition = list(self.items[hash_key].values()) if hash_key in self.items else []
        # An instance attribute shadows the method for this one call (the server is
        # single-threaded).
        self.all_items = lambda: sorted(partition, key=lambda item: item.range_key)
        try:
            return original(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    if os.environ.get("TRACKER_MOTO_TRACK_INSTANCES") != "1":
        stop_tracking_instances()
    if os.environ.get("TRACKER_MOTO_FAST_TRANSACTIONS") != "0":
        item_level_rollback()
    if os.environ.get("TRACKER_MOTO_FAST_QUERIES") != "0":
        partition_queries()
    run_simple(
        host,
        port,
        DomainDispatcherApplication(create_backend_app),
        threaded=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
