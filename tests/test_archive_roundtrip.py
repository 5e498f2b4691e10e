"""Property: every document a migration deletes is archived exactly, through the real
emulator. Documents are written with arbitrary values, read back by the server's own
GetDocument, deleted by an apply, and the archive must equal what the server held."""

from __future__ import annotations

import itertools
from pathlib import Path

from google.api_core.exceptions import InvalidArgument
from google.cloud.firestore_v1 import types
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from fsmigrate.engine.runner import Runner
from fsmigrate.firestore import codec
from fsmigrate.firestore.store import Store, Target
from fsmigrate.scripts.loader import Script, build_chain
from fsmigrate.state.database import State
from strategies import documents_equal, firestore_fields, python_document_data, python_equal

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
_counter = itertools.count()


def delete_all(ctx):
    for doc in ctx.scan("docs"):
        yield ctx.delete(doc)


def apply_delete_all(project: str, state_path: Path) -> State:
    script = Script(
        revision="0001",
        down_revision=None,
        path=Path("0001_delete_all.py"),
        doc="Delete every document of docs.",
        checksum="0" * 64,
        plan=delete_all,
    )
    state = State.open(state_path)
    Runner(Store(Target(project, emulator_host="set")), state, build_chain([script])).upgrade(
        dry_run=False
    )
    return state


def archived(state: State) -> dict[str, types.Document]:
    rows = [op for run in state.runs() for op in state.ops(run["id"], status="committed")]
    return {op["path"]: codec.bytes_to_document(op["before"]) for op in rows}


def server_copy(client, path: str) -> types.Document:
    name = f"{client._database_string}/documents/{path}"
    return client._firestore_api.get_document(request={"name": name})


@SETTINGS
@given(docs=st.lists(python_document_data(), min_size=1, max_size=4))
def test_archive_equals_the_deleted_python_data(emulator, tmp_path, docs) -> None:
    from google.cloud import firestore

    project = f"rt-py-{next(_counter)}"
    client = firestore.Client(project=project)
    originals = {}
    for i, data in enumerate(docs):
        client.document(f"docs/d{i}").set(data)
        originals[f"docs/d{i}"] = server_copy(client, f"docs/d{i}")

    state = apply_delete_all(project, tmp_path / f"{project}.db")

    assert list(client.collection("docs").list_documents()) == []
    archive = archived(state)
    assert set(archive) == set(originals)
    for path, doc in archive.items():
        assert documents_equal(doc, originals[path])
        decoded = codec.decode_fields(doc.fields, client)
        assert python_equal(decoded, docs[int(path.rsplit("d", 1)[1])])
        # and the JSON the audit shows converts back to the same document
        assert documents_equal(codec.json_to_document(codec.document_to_json(doc)), doc)


def _local_references(fields, database: str):
    """Point generated references at the database under test (the server checks them)."""
    pb = types.Document(fields=fields)._pb
    stack = [pb.fields]
    while stack:
        for value in stack.pop().values():
            kind = value.WhichOneof("value_type")
            if kind == "reference_value":
                value.reference_value = (
                    database + "/documents/" + value.reference_value.split("/documents/", 1)[1]
                )
            elif kind == "map_value":
                stack.append(value.map_value.fields)
            elif kind == "array_value":
                stack.append({str(i): v for i, v in enumerate(value.array_value.values)})
    return pb.fields


@SETTINGS
@given(fields=firestore_fields())
def test_archive_keeps_every_value_type_exactly(emulator, tmp_path, fields) -> None:
    """Raw protobuf values (nanosecond timestamps, references, NaN, -0.0, bytes, geo
    points, nested maps and arrays) written straight through the API."""
    from google.cloud import firestore

    project = f"rt-pb-{next(_counter)}"
    client = firestore.Client(project=project)
    name = f"{client._database_string}/documents/docs/raw"
    doc = types.Document(name=name)
    doc._pb.fields.MergeFrom(_local_references(fields, client._database_string))
    try:
        client._firestore_api.commit(
            request={"database": client._database_string, "writes": [{"update": doc}]}
        )
    except InvalidArgument:  # e.g. an empty vector: no such document can exist
        reject()
    original = server_copy(client, "docs/raw")  # what Firestore kept (timestamps: to the µs)
    assert set(original.fields) == set(doc.fields)

    state = apply_delete_all(project, tmp_path / f"{project}.db")

    archive = archived(state)
    assert list(archive) == ["docs/raw"]
    assert documents_equal(archive["docs/raw"], original)
