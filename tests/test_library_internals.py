"""The internals of google-cloud-firestore fsmigrate still relies on, each where it has no
public equivalent, checked by name: a release that moves one fails here, naming it and
what uses it, before a user meets it on the production path (pyproject.toml pins the
release range these tests cover)."""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.client import Client
from google.cloud.firestore_v1.query import Query

from fsmigrate.firestore.connection import Channels, Connection

VERSION = metadata.version("google-cloud-firestore")

# (where it lives, its name, what in fsmigrate uses it and why)
INTERNALS: list[tuple[Any, str, str]] = [
    (Query, "_prep_stream", "Store._stream: a query's RunQuery request (scans read raw protobufs)"),
    (_helpers, "decode_value", "Doc.get, codec.decode_fields: a field's value as the client decodes it"),
    (_helpers, "encode_dict", "codec: values encoded as the client encodes them"),
    (_helpers, "encode_value", "scripts.archive: a redacted field's value"),
    (_helpers, "pbs_for_create", "Store.build_write: ctx.create's Write (sentinels, transforms)"),
    (_helpers, "pbs_for_set_no_merge", "Store.build_write: ctx.set's Write"),
    (_helpers, "pbs_for_update", "Store.build_write: ctx.update's Write"),
    (Client, "_firestore_api", "connection._Client: the client's API on fsmigrate's channel"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("owner", "name", "user"), INTERNALS, ids=[f"{getattr(o, '__name__', o)}.{n}" for o, n, _ in INTERNALS]
)  # fmt: skip
def test_each_internal_is_still_there(owner: Any, name: str, user: str) -> None:
    where = f"{owner.__module__}.{owner.__qualname__}" if inspect.isclass(owner) else owner.__name__
    assert hasattr(owner, name), (
        f"google-cloud-firestore {VERSION} has no {where}.{name} any more; fsmigrate relies "
        f"on it in {user}: find its replacement, or pin the release before it"
    )


def test_prep_stream_still_makes_a_run_query_request() -> None:
    client = firestore.Client(project="p", database="db", credentials=AnonymousCredentials())
    query = client.collection("items").order_by("n").limit(3)
    made = query._prep_stream(retry=None, read_time=None)
    assert len(made) == 3, f"Query._prep_stream of {VERSION} returns {len(made)} values, not 3"
    request = made[0]
    assert request["parent"] == "projects/p/databases/db/documents", request
    assert request["structured_query"].limit == 3


def test_the_client_reads_its_api_through_the_one_property_fsmigrate_gives() -> None:
    """Every call of the client goes through `_firestore_api` (read by name in the
    client's modules), so fsmigrate's channel and user agent reach all of them."""
    from google.cloud.firestore_v1 import aggregation, client, collection, document, query

    for module in (client, document, collection, query, aggregation):
        source = inspect.getsource(module)
        assert "._firestore_api." in source or "._firestore_api\n" in source, (
            f"google-cloud-firestore {VERSION}: {module.__name__} no longer calls "
            "_firestore_api; fsmigrate's connection._Client would not reach it"
        )
    channels = Channels(Connection(emulator_host="127.0.0.1:1"), "p", "(default)")
    try:
        given = channels.client._firestore_api
        assert channels.opened == 1  # the client's API is on the channel fsmigrate opened
        assert channels.client._firestore_api is given and channels.opened == 1
    finally:
        channels.close()
