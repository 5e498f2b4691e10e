"""Migration 0001 (the processor_heartbeats cleanup) tested with fsmigrate's pytest plugin,
the way a team tests its own migrations: the built-in tests on the incident's data, and the
cleanup's own expectations through the `fsmigrate` harness, against the real emulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fsmigrate import heartbeats
from fsmigrate.heartbeats import incident

COLLECTION = heartbeats.COLLECTION
NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture
def fsmigrate_seed() -> dict[str, dict[str, Any]]:
    """The incident as it was, with fewer legacy documents (both formats, all processors)."""
    return {COLLECTION: dict(incident.documents(NOW, legacy=120))}


def expected_after(docs: dict[str, dict[str, Any]]) -> dict[str, dt.datetime]:
    """Independent of the migration: per canonical ID, the freshest heartbeat among the
    canonical document and its processor's legacy documents."""
    best: dict[str, dt.datetime] = {}
    for doc_id, data in docs.items():
        found = heartbeats.classify(doc_id)
        if found.kind == heartbeats.UNKNOWN:
            continue
        beat = data["last_heartbeat"]
        best[found.canonical_id] = max(best.get(found.canonical_id, beat), beat)
    return best


def test_the_incident_is_cleaned_to_one_document_per_processor(fsmigrate) -> None:
    docs = dict(incident.documents(NOW))
    assert fsmigrate.seed(COLLECTION, docs) == 1053

    run = fsmigrate.upgrade().runs[0]

    assert (run.revision, run.status, run.skipped) == ("0001", "succeeded", 0)
    assert run.counts["delete"] == 1035
    after = fsmigrate.docs(COLLECTION)
    want = expected_after(docs)
    assert set(after) == set(want)  # only canonical documents: 18 kept + 2 created
    assert len(after) == 20
    for doc_id, data in after.items():
        assert heartbeats.classify(doc_id).kind in heartbeats.CANONICAL_KINDS
        assert data["last_heartbeat"] == want[doc_id], doc_id
    # a created canonical document carries its processor's fields and the canonical name
    created = after["PlayerPropPredictionProcessor"]
    assert created["processor_name"] == "PlayerPropPredictionProcessor" and "run_id" in created
    assert after["p2_nbac_player_boxscores"]["processor_name"] == "p2_nbac_player_boxscores"


def test_a_second_run_changes_nothing(fsmigrate, fsmigrate_seed) -> None:
    fsmigrate.seed_all(fsmigrate_seed)
    assert fsmigrate.upgrade().runs[0].committed > 0
    before = fsmigrate.snapshot()

    assert fsmigrate.upgrade().runs == []  # applied: nothing pending
    rerun = fsmigrate.rerun("0001").runs[0]

    assert (rerun.kind, rerun.planned, rerun.committed) == ("rerun", 0, 0)
    assert fsmigrate.snapshot() == before


def test_unknown_ids_are_left_alone_and_reported(fsmigrate) -> None:
    beat = NOW - dt.timedelta(minutes=5)
    odd = [
        "PlayerGameSummaryProcessor_None_",
        "p2_nba_raw.x_2024_totals",
        "Team2025Processor",
        "some-other-doc",
    ]
    fsmigrate.seed(
        COLLECTION,
        {
            doc_id: {"last_heartbeat": beat}
            for doc_id in [
                "PlayerGameSummaryProcessor",
                "PlayerGameSummaryProcessor_None_0a1b2c3d",
                *odd,
            ]
        },
    )

    planned = fsmigrate.plan("0001")
    notes = fsmigrate.upgrade(dry_run=True).runs[0].notes

    assert planned == [("delete", f"{COLLECTION}/PlayerGameSummaryProcessor_None_0a1b2c3d")]
    assert "unknown ID left alone: 'PlayerGameSummaryProcessor_None_'" in notes
    assert "unknown ID left alone: 'some-other-doc'" in notes
    assert fsmigrate.upgrade().runs[0].committed == 1
    assert sorted(fsmigrate.docs(COLLECTION)) == sorted(["PlayerGameSummaryProcessor", *odd])
