"""The SQLite state file: schema versioning, WAL, read-only access, the audit rows."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from fsmigrate.errors import RunNotFound, StateNotFound, StateSchemaTooNew
from fsmigrate.state.database import SCHEMA_VERSION, OpRecord, State


def start(state: State, project: str = "p", revision: str = "0001", mode: str = "apply") -> str:
    return state.start_run(
        invocation="inv",
        project=project,
        database="(default)",
        revision=revision,
        checksum="c" * 64,
        description="d",
        mode=mode,
    )


def test_new_file_uses_wal_and_records_its_schema_version(tmp_path: Path) -> None:
    state = State.open(tmp_path / "s.db")
    assert state.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert state.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert state._schema_version() == SCHEMA_VERSION
    state.close()
    State.open(tmp_path / "s.db").close()  # reopening is idempotent


def test_read_only_open_never_creates(tmp_path: Path) -> None:
    assert State.open_readonly(tmp_path / "missing.db") is None
    with pytest.raises(StateNotFound):
        State.require(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    State.open(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateSchemaTooNew, match="upgrade fsmigrate"):
        State.open(tmp_path / "s.db")
    with pytest.raises(StateSchemaTooNew):
        State.open_readonly(tmp_path / "s.db")


def test_ops_lifecycle_and_totals(tmp_path: Path) -> None:
    state = State.open(tmp_path / "s.db")
    run = start(state)
    state.record_ops(
        run,
        1,
        [OpRecord(i, "delete", f"c/{i}", None, b"\x00raw", None, "pending") for i in range(4)],
    )
    state.settle_ops(
        run,
        committed=[(0, "t0"), (1, "t0")],
        skipped=[(2, "changed since plan")],
        failed=[(3, "boom")],
    )
    row = state.run(run)
    assert (row["planned"], row["committed"], row["skipped"], row["failed"], row["batches"]) == (
        4,
        2,
        1,
        1,
        1,
    )
    assert state.op_counts(run) == {"delete": {"committed": 2, "skipped": 1, "failed": 1}}
    assert [r["before"] for r in state.ops(run, status="committed")] == [b"\x00raw", b"\x00raw"]
    with pytest.raises(RunNotFound):
        state.run("nope")


def test_notes_kept_for_later_go_with_the_next_batch_in_its_transaction(tmp_path: Path) -> None:
    """A run's notes (`later`) are not a commit each: they are written in the next write
    transaction (its next batch, or its end), and kept pending if that one rolls back."""
    state = State.open(tmp_path / "s.db")
    run = start(state)
    other = sqlite3.connect(tmp_path / "s.db")  # what another process (or a crash) sees

    def committed_notes() -> list[str]:
        rows = other.execute("SELECT text FROM notes WHERE run_id=? ORDER BY seq", (run,))
        return [text for (text,) in rows]

    state.add_note(run, 0, "merged A", later=True)
    state.add_note(run, 1, "merged B", later=True)
    assert committed_notes() == []
    with pytest.raises(RuntimeError), state.tx():
        raise RuntimeError("a batch that failed to journal")
    assert committed_notes() == []
    state.record_ops(run, 1, [OpRecord(0, "delete", "c/0", None, b"\x00", None, "pending")])
    assert committed_notes() == ["merged A", "merged B"]
    state.add_note(run, 2, "said at once")
    assert committed_notes() == ["merged A", "merged B", "said at once"]
    state.add_note(run, 3, "read back by its own process", later=True)
    assert state.notes(run)[-1] == "read back by its own process"
    assert committed_notes()[-1] == "read back by its own process"
    other.close()
    state.close()


def test_applied_is_keyed_by_project_and_database(tmp_path: Path) -> None:
    state = State.open(tmp_path / "s.db")
    run = start(state)
    state.mark_applied(project="p", database="(default)", revision="0001", checksum="x", run_id=run)
    assert set(state.applied("p", "(default)")) == {"0001"}
    assert state.applied("p", "other") == {}
    assert state.applied("q", "(default)") == {}


def test_a_reader_can_read_while_a_writer_holds_a_transaction(tmp_path: Path) -> None:
    writer = State.open(tmp_path / "s.db")
    run = start(writer)
    reader = State.open_readonly(tmp_path / "s.db")
    assert reader is not None
    with writer.tx():
        writer.conn.execute("UPDATE runs SET status='failed' WHERE id=?", (run,))
        assert reader.run(run)["status"] == "running"  # WAL: readers see the last commit
    assert reader.run(run)["status"] == "failed"


V3 = Path(__file__).parent / "data" / "state-v3" / "state.db"  # made by fsmigrate itself


def _as_version(path: Path, version: int) -> None:
    """A state file as an older fsmigrate wrote it: the schema 3 file the last version of
    that schema made, with the columns later added dropped again for versions 1 and 2."""
    shutil.copy(V3, path)
    path.chmod(0o600)
    db = sqlite3.connect(path)
    dropped = {
        1: ["plan_digest", "traffic", "estimate", "archive_policy", "pruned_at"],
        2: ["traffic", "estimate", "archive_policy", "pruned_at"],
        3: [],
    }[version]
    for column in dropped:
        db.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
    db.commit()
    db.close()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_state_file_of_an_older_schema_is_migrated_on_open(tmp_path: Path, version: int) -> None:
    path = tmp_path / "state.db"
    _as_version(path, version)
    db = sqlite3.connect(path)
    old_ops = db.execute(
        "SELECT run_id, seq, path, status FROM ops ORDER BY run_id, seq"
    ).fetchall()
    (run_id,) = db.execute("SELECT run_id FROM applied").fetchone()
    db.close()
    old = State.open_readonly(path)  # readable as it is, without changing it
    row = old.run(run_id)
    assert row["traffic"] is None and row["pruned_at"] is None and row["pruned_by"] is None
    assert row["read_time"] is None
    assert sorted(
        (r["run_id"], r["seq"], r["path"], r["status"])
        for run in old.runs()
        for r in old.ops(run["id"])
    ) == sorted(old_ops)
    old.close()
    assert sqlite3.connect(path).execute("SELECT value FROM meta").fetchone() == (str(version),)

    state = State.open(path)

    assert state._schema_version() == SCHEMA_VERSION == 7
    assert state.run(run_id)["read_time"] is None  # recorded from schema 5 on
    row = state.run(run_id)  # old runs, their operations and applied rows kept
    assert (row["revision"], row["status"], row["planned"]) == ("0001", "succeeded", 8)
    assert sorted(
        (r["run_id"], r["seq"], r["path"], r["status"])
        for run in state.runs()
        for r in state.ops(run["id"])
    ) == sorted(old_ops)
    assert state.applied("p", "(default)") == {}
    assert state.applied("fsm-v3-fixture", "(default)")["0001"]["run_id"] == run_id
    state.set_plan_digest([run_id], "ab" * 32)
    assert state.run(run_id)["plan_digest"] == "ab" * 32
    pruned = state.start_run(
        invocation="j",
        project="p",
        database="(default)",
        revision="0001",
        checksum="c",
        description="d",
        mode="apply",
        kind="prune",
    )  # a kind the schema 2 CHECK constraint refused
    assert state.run(pruned)["kind"] == "prune"
    assert state.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert state.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):  # references are enforced again
        state.conn.execute("INSERT INTO notes (run_id, seq, text) VALUES ('nope', 0, 'x')")


def test_a_schema_4_file_gets_the_read_time_of_its_runs(tmp_path: Path) -> None:
    """Schema 5 adds runs.read_time (the instant a run's plan read the database at): a
    schema 4 file reads as it is (no read time) and is upgraded on open."""
    path = tmp_path / "state.db"
    state = State.open(path)
    old_run = state.start_run(
        invocation="i",
        project="p",
        database="(default)",
        revision="0001",
        checksum="c",
        description="d",
        mode="dry-run",
    )
    state.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN read_time")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    old = State.open_readonly(path)
    assert old is not None and old.run(old_run)["read_time"] is None
    old.close()

    state = State.open(path)

    assert state._schema_version() == SCHEMA_VERSION and state.run(old_run)["read_time"] is None
    new_run = state.start_run(
        invocation="j",
        project="p",
        database="(default)",
        revision="0001",
        checksum="c",
        description="d",
        mode="dry-run",
        read_time="2026-12-02T03:00:00.000000Z",
    )
    assert state.run(new_run)["read_time"] == "2026-12-02T03:00:00.000000Z"
    state.close()
