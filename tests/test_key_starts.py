"""distributed.at_key_starts: Beam's split points moved to where prefix keys start, so no
prefix key's documents (nor those of the keys nested in it) are cut between two ranges."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fsmigrate.distributed import at_key_starts

# IDs over a small alphabet, so prefixes, nesting and shared starts are common; a key is
# declared a prefix key when it ends with "P" (like a class name ending in "Processor")
IDS = st.lists(st.text("abP_", min_size=1, max_size=6), min_size=1, max_size=40, unique=True)


def declared(key: str) -> bool:
    return key.endswith("P")


def prefix_keys_of(doc_id: str) -> list[str]:
    return [doc_id[:n] for n in range(1, len(doc_id) + 1) if declared(doc_id[:n])]


@given(IDS, st.data())
def test_no_prefix_key_is_cut_between_two_ranges(ids: list[str], data) -> None:
    ids.sort()
    chosen = sorted(data.draw(st.sets(st.sampled_from(ids), max_size=8)))
    points = at_key_starts([f"c/{i}" for i in chosen], declared)
    assert points == sorted(set(points))  # in order, each once
    assert len(points) <= len(chosen)
    bounds = [p.split("/", 1)[1] for p in points]

    def range_of(doc_id: str) -> int:
        return sum(doc_id >= b for b in bounds)

    for doc_id in ids:  # every document is in the range of each of its prefix keys
        for key in prefix_keys_of(doc_id):
            assert range_of(doc_id) == range_of(key), (doc_id, key, bounds)


def test_a_point_inside_a_key_moves_to_its_shortest_declared_prefix() -> None:
    points = ["c/AlphaP_None_1", "c/AlphaPBetaP_2", "c/Gamma_7", "c/ZetaP"]
    assert at_key_starts(points, declared) == ["c/AlphaP", "c/Gamma_7", "c/ZetaP"]
