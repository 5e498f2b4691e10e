"""The Firestore layer against the real emulator: paging scans, reads, raw documents."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsmigrate.errors import UsageError
from fsmigrate.firestore.store import Store, Target


@pytest.fixture
def store(fs_client, project_id) -> Store:
    return Store(Target(project_id, emulator_host="set"), client=fs_client)


def test_scan_pages_through_everything_in_order_without_duplicates(store, fs_client) -> None:
    batch = fs_client.batch()
    for i in range(23):
        batch.set(fs_client.document(f"things/t{i:03d}"), {"i": i})
    batch.set(fs_client.document("other/x"), {"i": -1})
    batch.commit()

    paths = [doc.path for doc in store.scan("things", page_size=5)]

    assert paths == [f"things/t{i:03d}" for i in range(23)]
    assert [d.get("i") for d in store.scan("things", page_size=23)] == list(range(23))
    assert [d.id for d in store.scan("things", where=[("i", ">=", 18)], page_size=2)] == [
        "t018",
        "t019",
        "t020",
        "t021",
        "t022",
    ]
    assert [d.id for d in store.scan("things", where=[("i", "==", 4)])] == ["t004"]


def test_scan_is_lazy_one_page_at_a_time(store, fs_client) -> None:
    for i in range(6):
        fs_client.document(f"lazy/d{i}").set({"i": i})
    docs = store.scan("lazy", page_size=2)
    first = next(docs)
    fs_client.document("lazy/d5").delete()  # after the first page was read
    rest = [d.id for d in docs]
    assert first.id == "d0" and rest == ["d1", "d2", "d3", "d4"]


def test_a_scan_is_received_on_the_reading_thread_and_ends_with_its_consumer(
    store, fs_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream's messages are taken on the thread that reads the scan (no channel spin
    thread: channel.py), and a consumer that stops early ends the stream."""
    import threading

    batch = fs_client.batch()
    for i in range(40):
        batch.set(fs_client.document(f"ahead/d{i:03d}"), {"i": i})
    batch.commit()
    calls = []
    run_query = store.api.run_query

    def recorded(*args, **kwargs):
        calls.append(run_query(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(store.api, "run_query", recorded)
    before = set(threading.enumerate())
    assert [d.get("i") for d in store.scan("ahead")] == list(range(40))
    docs = store.scan("ahead")
    assert next(docs).id == "d000"
    assert set(threading.enumerate()) - before == set()
    assert calls[-1].is_active()
    docs.close()
    assert not calls[-1].is_active()
    assert [d.id for d in store.scan("ahead", page_size=7)][-1] == "d039"


def test_collection_group_scan_finds_every_subcollection(store, fs_client) -> None:
    fs_client.document("users/a/events/e1").set({"n": 1})
    fs_client.document("users/b/events/e2").set({"n": 2})
    fs_client.document("events/e3").set({"n": 3})
    fs_client.document("users/a/other/e4").set({"n": 4})

    group = sorted(d.path for d in store.scan("events", group=True, page_size=1))
    assert group == ["events/e3", "users/a/events/e1", "users/b/events/e2"]
    assert [d.path for d in store.scan("users/a/events")] == ["users/a/events/e1"]


def test_scan_refuses_bad_arguments(store) -> None:
    with pytest.raises(UsageError):
        list(store.scan("a/b"))
    with pytest.raises(UsageError):
        list(store.scan("a/b", group=True))
    with pytest.raises(UsageError):
        list(store.scan("a", page_size=0))


def test_doc_interface_and_reads(store, fs_client) -> None:
    when = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
    fs_client.document("c/d").set({"a": {"b": 1}, "t": when, "s": "x"})
    doc = store.get("c/d")
    snap = fs_client.document("c/d").get()
    assert doc is not None and (doc.id, doc.path) == ("d", "c/d")
    assert doc.update_time == snap.update_time and doc.create_time == snap.create_time
    assert doc.get("a.b") == 1 and doc.get("a.zz", "dflt") == "dflt" and doc.get("s.x") is None
    assert doc.get("t") == when
    assert doc.to_dict() == snap.to_dict()
    assert doc.reference.path == "c/d"
    assert store.get("c/missing") is None
    assert store.get_many(["c/d", "c/missing"])["c/missing"] is None
    with pytest.raises(UsageError):
        store.get("c")


def test_partitioned_group_scan_falls_back_to_one_stream_on_the_emulator(store, fs_client) -> None:
    for i in range(30):
        fs_client.document(f"users/u{i % 3}/events/e{i:02d}").set({"i": i})
    notices: list[str] = []

    paths = [d.path for d in store.scan("events", group=True, partitions=4, notice=notices.append)]

    assert sorted(paths) == sorted(f"users/u{i % 3}/events/e{i:02d}" for i in range(30))
    assert len(paths) == 30
    assert len(notices) == 1 and "does not support PartitionQuery" in notices[0]
    assert store.partition_queries("events", 4) is None  # the emulator answers 501


def test_parallel_parts_are_merged_without_loss_or_duplicates(
    store, fs_client, monkeypatch
) -> None:
    """The parallel path, with real queries over split points chosen here (the emulator
    cannot compute partitions itself)."""
    from google.cloud.firestore_v1.field_path import FieldPath

    for i in range(250):
        fs_client.document(f"users/u{i % 5}/events/e{i:03d}").set({"i": i})
    names = sorted(d.path for d in store.scan("events", group=True))
    cuts = [fs_client.document(names[80]), fs_client.document(names[170])]
    base = fs_client.collection_group("events").order_by(FieldPath.document_id())
    key = FieldPath.document_id()
    parts = [
        base.end_before({key: cuts[0]}),
        base.start_at({key: cuts[0]}).end_before({key: cuts[1]}),
        base.start_at({key: cuts[1]}),
    ]
    monkeypatch.setattr(store, "partition_queries", lambda collection, count, **kw: parts)

    paths = [d.path for d in store.scan("events", group=True, partitions=3)]

    assert len(paths) == 250 and sorted(paths) == names


def offline_store() -> Store:
    """A Store of a production target that never connects (anonymous client)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    return Store(
        Target("p", "(default)"),
        client=firestore.Client(project="p", credentials=AnonymousCredentials()),
    )


@settings(max_examples=60)
@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.one_of(st.none(), st.timezones()),
    ),
    st.one_of(st.none(), st.integers(0, 999)),
)
def test_a_writes_precondition_time_is_the_protobuf_librarys(when, nanos) -> None:
    """build_write sets the precondition's timestamp (codec.to_timestamp): the one
    Timestamp.FromDatetime gives (a naive time is UTC), with a DatetimeWithNanoseconds'
    nanoseconds."""
    from google.cloud.firestore_v1.types import Write
    from google.protobuf.timestamp_pb2 import Timestamp
    from proto.datetime_helpers import DatetimeWithNanoseconds

    from fsmigrate.scripts.operations import DELETE, UPDATE, Operation, Precondition

    if nanos is not None:  # a Firestore time: UTC, to the nanosecond
        utc = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
        utc = utc.astimezone(dt.timezone.utc)
        when = DatetimeWithNanoseconds(
            *utc.timetuple()[:6], nanosecond=utc.microsecond * 1000 + nanos, tzinfo=utc.tzinfo
        )
    expected = Timestamp()
    expected.FromDatetime(when)
    if nanos is not None:
        expected.nanos = when.nanosecond
    offline = offline_store()
    for kind, data in ((DELETE, None), (UPDATE, {"a": 1})):
        op = Operation(kind, "c/d", data, precondition=Precondition(update_time=when))
        written = Write.pb().FromString(offline.build_write(op))
        assert written.current_document.update_time == expected


def test_without_credentials_the_first_call_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Store's own channel (channel.py) finds Google's credentials when first used; with
    none, the one-line refusal the client's absence gives, not the auth library's error."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    def no_credentials(*args, **kwargs):
        raise DefaultCredentialsError("no application default credentials")

    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(google.auth, "default", no_credentials)
    offline = offline_store()
    with pytest.raises(UsageError, match="no Google credentials for project p"):
        offline.api  # noqa: B018  (the property is the call)


def test_a_slow_reader_holds_a_bounded_part_of_its_stream(store, fs_client) -> None:
    """The transport reads a stream ahead of its reader, but not all of it (channel.py):
    a reader that pauses after its first document while the server could send 20 MB more
    holds at most a few MB in memory meanwhile, and then reads every document."""
    import time

    def rss_mb() -> float:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    pad = "x" * 4000
    for start in range(0, 5_000, 500):
        batch = fs_client.batch()
        for i in range(start, start + 500):
            batch.set(fs_client.document(f"slow/d{i:05d}"), {"pad": pad, "i": i})
        batch.commit()
    docs = store.scan("slow")
    assert next(docs).id == "d00000"
    before = rss_mb()
    time.sleep(3)  # the server streams on; the transport holds what its window lets in
    held = rss_mb() - before
    assert sum(1 for _ in docs) == 4_999
    assert held < 3, f"{held:.1f} MB of the stream held while the reader paused"
