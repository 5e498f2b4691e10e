"""Applied state follows the database: markers in Firestore, reconciled with state files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from fsmigrate.engine.markers import Markers
from fsmigrate.firestore.store import Store, Target
from helpers import Fsm, seed_docs, write_script

INCREMENT = """
def plan(ctx):
    for doc in ctx.scan("counters"):
        yield ctx.update(doc, {"n": doc.get("n") + 1})
"""
TOUCH = """
def plan(ctx):
    for doc in ctx.scan("counters"):
        yield ctx.update(doc, {"touched": True})
"""
MARKER = "_fsmigrate/meta/revisions/0001"


def seed(client, n: int = 5) -> None:
    seed_docs(client, {f"counters/c{i}": {"n": 0} for i in range(n)})


def values(client) -> list[int]:
    return sorted(s.get("n") for s in client.collection("counters").stream())


@pytest.fixture
def operators(tmp_path: Path, project_id: str, emulator) -> tuple[Fsm, Fsm]:
    """Operator A and operator B: same database, own directories, own state files."""
    pair = []
    for name in ("a", "b"):
        fsm = Fsm(project_id, tmp_path / name / "state.db", tmp_path / name / "migrations")
        write_script(fsm.migrations, "0001", None, INCREMENT)
        pair.append(fsm)
    return pair[0], pair[1]


def test_b_sees_what_a_applied_and_applies_nothing(operators, fs_client) -> None:
    a, b = operators
    seed(fs_client)
    run_a = a.json("upgrade")["migrations"][0]["run_id"]
    marker = fs_client.document(MARKER).get().to_dict()
    assert (marker["revision"], marker["run_id"], marker["kind"]) == ("0001", run_a, "upgrade")
    assert marker["counts"] == {"update": 5}

    assert b.json("status")["revisions"][0]["state"] == "applied elsewhere"
    assert [r["state"] for r in b.json("status", "--local")["revisions"]] == ["pending"]
    out = b.json("upgrade")

    assert out["migrations"] == []  # nothing ran
    assert values(fs_client) == [1] * 5  # not incremented twice
    history = b.json("history")["runs"]
    assert [(r["kind"], r["status"]) for r in history] == [("elsewhere", "succeeded")]
    assert run_a in history[0]["notes"][0]
    assert b.json("status")["revisions"][0]["state"] == "applied"
    assert b("verify").exit_code == 0


def test_b_verify_catches_a_script_a_applied_with_other_content(operators, fs_client) -> None:
    a, b = operators
    seed(fs_client)
    assert a("upgrade").exit_code == 0
    script = b.migrations / "0001_test_0001.py"
    script.write_text(script.read_text().replace("+ 1", "+ 2"))

    result = b("verify")

    assert result.exit_code == 1
    assert (
        "revision 0001" in result.stdout
        and "edited after it was applied to the database" in result.stdout
    )
    blocked = b("upgrade")
    assert blocked.exit_code == 1 and "edited after it was applied" in blocked.stderr
    assert values(fs_client) == [1] * 5


def test_stamp_adopts_a_database_changed_by_hand(operators, fs_client) -> None:
    a, _ = operators
    seed(fs_client)
    write_script(a.migrations, "0002", "0001", TOUCH)
    assert a("stamp", "0001").exit_code == 2  # --reason is required

    stamped = a("stamp", "0001", "--reason", "incremented by hand on 2026-11-20")

    assert stamped.exit_code == 0, stamped.output
    marker = fs_client.document(MARKER).get().to_dict()
    assert (marker["kind"], marker["reason"]) == ("stamp", "incremented by hand on 2026-11-20")
    out = a.json("upgrade")
    assert [m["revision"] for m in out["migrations"]] == ["0002"]
    assert values(fs_client) == [0] * 5  # 0001 never ran
    assert [r["state"] for r in a.json("status")["revisions"]] == ["applied", "applied"]
    assert a("stamp", "0001", "--reason", "again").exit_code == 2


def test_stamp_marks_every_earlier_revision_too(operators, fs_client) -> None:
    a, _ = operators
    write_script(a.migrations, "0002", "0001", TOUCH)
    assert a("stamp", "0002", "--reason", "adopted").exit_code == 0
    assert sorted(d.id for d in fs_client.collection("_fsmigrate/meta/revisions").stream()) == [
        "0001",
        "0002",
    ]


def test_a_local_record_without_marker_is_reported(operators, fs_client) -> None:
    a, _ = operators
    seed(fs_client)
    assert a("upgrade").exit_code == 0
    fs_client.document(MARKER).delete()  # a database whose markers were deleted
    result = a("verify", "--format", "json")
    assert result.exit_code == 1
    finding = json.loads(result.stdout)["findings"][0]
    assert finding["problem"] == "no marker" and "fsmigrate stamp 0001" in finding["message"]
    assert a.json("status")["revisions"][0]["state"] == "applied (no marker)"
    assert a("verify", "--local").exit_code == 0


def test_markers_and_lock_never_show_up_in_scans(operators, fs_client, project_id) -> None:
    a, _ = operators
    seed(fs_client)
    fs_client.document("users/u1/revisions/r1").set({"x": 1})
    fs_client.document("users/u1/meta/m1").set({"x": 1})
    assert a("upgrade").exit_code == 0
    store = Store(Target(project_id, emulator_host="set"))

    assert [d.path for d in store.scan("revisions", group=True)] == ["users/u1/revisions/r1"]
    assert [d.path for d in store.scan("meta", group=True)] == ["users/u1/meta/m1"]
    assert list(store.scan("_fsmigrate", group=True)) == []
    with pytest.raises(Exception, match="fsmigrate's own"):
        list(store.scan("_fsmigrate"))
    assert set(Markers(store).read()) == {"0001"}


def test_markers_collection_is_configurable(operators, fs_client) -> None:
    a, _ = operators
    seed(fs_client)
    assert a("--markers-collection", "ops_meta", "upgrade").exit_code == 0
    assert fs_client.document("ops_meta/meta/revisions/0001").get().exists
    assert not fs_client.document(MARKER).get().exists


@pytest.mark.parametrize("point", ["before-marker", "after-marker"])
def test_crash_between_last_batch_and_marker_is_resolved_without_double_apply(
    operators, fs_client, point: str
) -> None:
    a, _ = operators
    seed(fs_client)
    args = a.argv("upgrade", "--quiet")
    killed = subprocess.run(
        args,
        env={**os.environ, "FSMIGRATE_TEST_CRASH": f"{point}:0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert values(fs_client) == [1] * 5
    assert fs_client.document(MARKER).get().exists is (point == "after-marker")

    again = subprocess.run(args, capture_output=True, text=True, check=False)

    assert again.returncode == 0, again.stderr
    assert values(fs_client) == [1] * 5  # applied once
    assert fs_client.document(MARKER).get().exists
    history = a.json("history")["runs"]
    statuses = sorted((r["status"], r["kind"]) for r in history)
    if point == "before-marker":  # resumed: nothing left to do, then the marker
        assert statuses == [("interrupted", "upgrade"), ("succeeded", "upgrade")]
    else:  # the marker names our own run: that run is completed from it
        assert statuses == [("succeeded", "upgrade")]
    assert a.json("status")["revisions"][0]["state"] == "applied"
