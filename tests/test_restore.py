"""Restore from the archive: forward, audited, never overwriting a document that exists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from google.cloud.firestore_v1 import GeoPoint

from helpers import Fsm, write_script

DELETE_AND_UPDATE = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("n") < 4:
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {"n": -1})
"""
OLD = dt.datetime(1969, 7, 20, 20, 17, 40, 500000, tzinfo=dt.timezone.utc)


@pytest.fixture
def applied(tmp_path: Path, project_id: str, emulator, fs_client) -> tuple[Fsm, str, dict]:
    original = {}
    for i in range(6):
        data = {
            "n": i,
            "when": OLD,
            "raw": bytes([i, 0, 255]),
            "geo": GeoPoint(1.5, -2.25),
            "nested": {"list": [i, None, "x"], "nan": float("inf")},
        }
        fs_client.document(f"items/i{i}").set(data)
        original[f"items/i{i}"] = fs_client.document(f"items/i{i}").get().to_dict()
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE_AND_UPDATE)
    run_id = fsm.json("upgrade")["migrations"][0]["run_id"]
    return fsm, run_id, original


def test_restore_writes_back_deleted_documents_exactly(applied, fs_client) -> None:
    fsm, run_id, original = applied
    fs_client.document("items/i1").set({"recreated": True})  # exists now: left alone

    dry = fsm.json("restore", run_id, "--dry-run")
    assert sorted(op["path"] for op in dry["migrations"][0]["operations"]) == [
        "items/i0",
        "items/i2",
        "items/i3",
    ]
    assert not fs_client.document("items/i0").get().exists  # the dry-run wrote nothing

    out = fsm.json("restore", run_id)

    run = out["migrations"][0]
    assert (run["kind"], run["committed"], run["status"]) == ("restore", 3, "succeeded")
    for path in ("items/i0", "items/i2", "items/i3"):
        assert fs_client.document(path).get().to_dict() == original[path]
    # the pre-1970 timestamp with a fraction survives exactly (no decode/encode round trip)
    assert fs_client.document("items/i0").get().get("when") == OLD
    assert fs_client.document("items/i1").get().to_dict() == {"recreated": True}
    notes = "\n".join(run["notes"])
    assert "items/i1: left alone, it exists now" in notes
    assert "items/i4: left alone, it exists now" in notes  # updated, not deleted
    assert fsm.json("status")["revisions"][0]["state"] == "applied"  # unchanged by a restore


def test_restore_of_one_document_and_of_nothing(applied, fs_client) -> None:
    fsm, run_id, original = applied
    refused = fsm("restore", run_id, "--doc", "items/i2", "--doc", "items/zz")
    assert refused.exit_code == 1 and f"run {run_id} did not change items/zz" in refused.stderr
    assert not fs_client.document("items/i2").get().exists  # nothing restored
    out = fsm.json("restore", run_id, "--doc", "items/i2")
    assert [op["path"] for op in out["migrations"][0]["operations"]] == ["items/i2"]
    assert not fs_client.document("items/i0").get().exists
    again = fsm.json("restore", run_id, "--doc", "items/i2")
    assert again["migrations"][0]["planned"] == 0


def test_restore_skips_a_document_created_between_plan_and_write(applied, fs_client) -> None:
    """The precondition, not just the plan's read, protects a document that appears late."""
    fsm, run_id, _ = applied
    from fsmigrate.scripts import restore as restore_mod

    real = restore_mod._restore

    def racing(ctx, rows):
        ops = list(real(ctx, rows))
        fs_client.document("items/i3").set({"late": True})
        yield from ops

    restore_mod._restore = racing
    try:
        out = fsm.json("restore", run_id)
    finally:
        restore_mod._restore = real
    run = out["migrations"][0]
    assert (run["committed"], run["skipped"]) == (3, 1)  # i0, i1, i2 restored; i3 skipped
    assert fs_client.document("items/i3").get().to_dict() == {"late": True}


def test_restore_refuses_dry_runs_and_other_targets(applied, tmp_path) -> None:
    fsm, run_id, _ = applied
    dry_id = fsm.json("upgrade", "--dry-run")  # nothing pending: no run
    assert dry_id["migrations"] == []
    other = Fsm(fsm.project + "-other", fsm.state, fsm.migrations)
    result = other("restore", run_id)
    assert result.exit_code == 2 and "pass that --project" in result.stderr
    assert fsm("restore", "nope").exit_code == 2
