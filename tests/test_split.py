"""Splitting a collection into ranges for Beam's workers: a COUNT, then one keys-only
query per point that skips to it on the server (the emulator has no PartitionQuery):
ranges of the same size, and no name but the points read here."""

from __future__ import annotations

import bisect
import datetime as dt

from fsmigrate.firestore.store import Store, Target
from helpers import seed_items


def _received(store: Store) -> list[str]:
    """The paths of every document the store's queries bring to this process."""
    seen: list[str] = []
    stream = store._stream

    def counted(*args, **kwargs):
        for doc in stream(*args, **kwargs):
            seen.append(doc.path)
            yield doc

    store._stream = counted  # type: ignore[method-assign]
    return seen


def test_the_points_cut_even_ranges_and_only_they_are_read(emulator, fs_client, project_id) -> None:
    seed_items(fs_client, 3000)
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    seen = _received(store)

    points, total = store.split("items", 8)

    assert total == 3000
    assert points == sorted(points) and len(points) == 7
    assert seen == points  # the server skipped to each point: no other name came here
    names = [f"items/i{i:05d}" for i in range(3000)]
    edges = [0, *(bisect.bisect_left(names, p) for p in points), 3000]
    assert [b - a for a, b in zip(edges, edges[1:])] == [375] * 8


def test_the_split_is_of_the_names_at_the_runs_snapshot(emulator, fs_client, project_id) -> None:
    """At `read_time`, documents added since are neither counted nor a point."""
    seed_items(fs_client, 300)
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    before = dt.datetime.now(dt.timezone.utc)
    points, total = store.split("items", 4, read_time=before)
    for i in range(300):  # a name before each of the old ones
        fs_client.document(f"items/h{i:05d}").set({"n": i})
    assert (
        store.split("items", 4, read_time=before)
        == (points, total)
        == (
            ["items/i00075", "items/i00150", "items/i00225"],
            300,
        )
    )
    assert store.split("items", 4)[1] == 600


def test_fewer_documents_than_parts_give_no_empty_range(emulator, fs_client, project_id) -> None:
    seed_items(fs_client, 3)
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    assert store.split("items", 8) == (["items/i00001", "items/i00002"], 3)


def test_a_small_collection_gives_no_points(emulator, fs_client, project_id) -> None:
    seed_items(fs_client, 1)
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    assert store.split("items", 8) == ([], 1)
    assert store.split("nothing", 8) == ([], 0)


def test_partition_query_samples_the_points_of_a_top_level_collection(
    emulator, fs_client, project_id
) -> None:
    """Production answers PartitionQuery (the emulator does not): a top-level collection
    takes its collection group's points that are directly under it, and reads no name."""
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    store._partition_points = lambda c, n, read_time=None: [  # type: ignore[method-assign]
        "items/a",
        "other/x/items/b",
        "items/c",
    ]
    store.count = lambda *a, **k: 42  # type: ignore[method-assign]
    store._scan_query = None  # type: ignore[assignment]  (no scan may happen)
    assert store.split("items", 4) == (["items/a", "items/c"], 42)
