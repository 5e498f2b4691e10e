"""Splitting a collection into ranges for Beam's workers: one pass over the names, no
count first (the emulator has no PartitionQuery), ranges of similar size."""

from __future__ import annotations

import bisect

from fsmigrate.firestore.store import Store, Target
from helpers import seed_items


def test_one_pass_gives_the_total_and_even_ranges(emulator, fs_client, project_id) -> None:
    seed_items(fs_client, 3000)
    store = Store(Target(project_id, "(default)", emulator.host_port), client=fs_client)
    calls = []
    store.count = lambda *a, **k: calls.append(a) or 0  # type: ignore[method-assign]

    points, total = store.split("items", 8)

    assert total == 3000 and not calls  # counted by the same pass, no COUNT query
    assert points == sorted(points) and len(points) == 7
    names = [f"items/i{i:05d}" for i in range(3000)]
    edges = [0, *(bisect.bisect_left(names, p) for p in points), 3000]
    sizes = [b - a for a, b in zip(edges, edges[1:])]
    assert min(sizes) >= 300 and max(sizes) <= 450  # 375 each, give or take a step


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
