"""Retention: `fsmigrate prune` drops old runs' before-images for good (not even in free pages
or the WAL), gives the space back, keeps the runs, is itself audited, and keeps a journal
that is still needed; audit, export and restore of a pruned run say what is gone."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from fsmigrate import api
from fsmigrate.state.database import OpRecord, State
from fsmigrate.state.prune import StateBusy, parse_before
from helpers import Fsm, write_script

DELETE = """
def plan(ctx):
    for doc in ctx.scan("{collection}"):
        yield ctx.delete(doc)
"""
SECRET = os.urandom(24_000)  # incompressible: an archived copy keeps long runs of it as is


def chunks_found(path: Path, secret: bytes = SECRET, size: int = 32) -> int:
    """How many 32-byte pieces of `secret` occur in the state file, its WAL or SHM."""
    raw = b"".join(
        p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()
    )
    return sum(secret[i : i + size] in raw for i in range(0, len(secret) - size, size))


@pytest.fixture
def plain_sqlite(monkeypatch):
    """SQLite as most builds ship it: deleted content stays in free pages (Debian's turns
    secure_delete on by default; the guarantee must not depend on that)."""
    from fsmigrate.state import database as state_module

    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA secure_delete=OFF")
        return conn

    monkeypatch.setattr(state_module.sqlite3, "connect", connect)


@pytest.fixture
def two_runs(tmp_path: Path, project_id: str, emulator, fs_client, plain_sqlite):
    """Run A (0001) archived the secret; then a cutoff; then run B (0002)."""
    for i in range(3):
        fs_client.document(f"old/o{i}").set({"secret": SECRET, "i": i})
        fs_client.document(f"new/n{i}").set({"i": i, "note": "kept"})
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, DELETE.format(collection="old"))
    write_script(fsm.migrations, "0002", "0001", DELETE.format(collection="new"))
    run_a = fsm.json("upgrade", "--to", "0001")["migrations"][0]["run_id"]
    cutoff = dt.datetime.now(dt.timezone.utc).isoformat()
    time.sleep(0.01)
    run_b = fsm.json("upgrade")["migrations"][0]["run_id"]
    return fsm, run_a, run_b, cutoff


def test_prune_drops_the_values_for_good_and_keeps_the_runs(two_runs, tmp_path) -> None:
    fsm, run_a, run_b, cutoff = two_runs
    assert fsm("audit", run_a, "--export", str(tmp_path / "a.jsonl")).exit_code == 0
    exported = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert base64.b64decode(exported[0]["before"]["fields"]["secret"]["$bytes"]) == SECRET
    assert chunks_found(fsm.state) > 100  # the archive holds it (stored as is by zlib)
    db = sqlite3.connect(fsm.state)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the file itself
    db.close()
    size = fsm.state.stat().st_size
    preview = fsm.json("prune", "--before", cutoff, "--dry-run")
    assert [p["run_id"] for p in preview["pruned"]] == [run_a] and preview["run_id"] is None

    done = fsm.json("prune", "--before", cutoff, "--yes")

    assert [(p["run_id"], p["before_images"]) for p in done["pruned"]] == [(run_a, 3)]
    assert chunks_found(fsm.state) == 0  # not in a free page, not in the WAL
    assert fsm.state.stat().st_size < size - 20_000  # the block (zlib: 3 alike) gone, space back
    assert done["bytes_after"] < done["bytes_before"]
    # the runs stay, with their counts; the prune is a run that names what it pruned
    history = {r["run_id"]: r for r in fsm.json("history")["runs"]}
    assert (history[run_a]["committed"], history[run_a]["pruned_by"]) == (3, done["run_id"])
    assert history[run_b]["pruned_at"] is None
    prune_run = history[done["run_id"]]
    assert prune_run["kind"] == "prune" and any(run_a in n for n in prune_run["notes"])
    ops = fsm.json("audit", run_a)["operations"]
    assert [(op["path"], op["status"], op["before"]) for op in ops] == [
        (f"old/o{i}", "committed", None) for i in range(3)
    ]
    assert "pruned at" in fsm("audit", run_a).stdout
    ticket = fsm("audit", run_a, "--format", "markdown").stdout
    assert "pruned at" in ticket and "--export" not in ticket  # no instructions that fail
    # what needs the values says in one line that they are gone
    export = fsm("audit", run_a, "--export", str(tmp_path / "again.jsonl"))
    assert export.exit_code == 1 and "pruned" in export.stderr
    assert len(export.stderr.strip().splitlines()) == 1 and not (tmp_path / "again.jsonl").exists()
    restore = fsm("restore", run_a)
    assert restore.exit_code == 1 and "old/o0, old/o1, old/o2" in restore.stderr
    assert len(restore.stderr.strip().splitlines()) == 1
    assert fsm.json("restore", run_b, "--dry-run")["migrations"][0]["planned"] == 3
    again = fsm.json("prune", "--before", cutoff, "--yes")  # nothing left to prune
    assert again["pruned"] == [] and again["run_id"] is None


def test_prune_asks_first_and_refuses_bad_ages(two_runs) -> None:
    fsm, run_a, _, cutoff = two_runs
    declined = fsm("prune", "--before", cutoff, input="n\n")
    assert declined.exit_code == 1 and "FAILED: declined at the prompt" in declined.stderr
    assert all(r["pruned_at"] is None for r in fsm.json("history")["runs"])
    assert fsm("prune", "--before", "soon").exit_code == 2
    assert fsm("prune", "--before", "2999-01-01").exit_code == 2  # the future


def journal_of(state: State, mode: str, status: str, ops: str) -> str:
    run = state.start_run(
        invocation="i",
        project="p",
        database="(default)",
        revision="0001",
        checksum="c",
        description="d",
        mode=mode,
    )
    state.record_ops(
        run, 1, [OpRecord(i, "delete", f"c/d{i}", None, b"doc", None, s) for i, s in enumerate(ops)]
    )
    if status != "running":
        state.finish_run(run, status=status, counts={"delete": len(ops)})
    return run


def test_a_journal_still_needed_is_kept_and_a_running_apply_holds_the_prune(tmp_path) -> None:
    state = State.open(tmp_path / "state.db")
    needed = journal_of(state, "apply", "failed", ["committed", "pending"])
    done = journal_of(state, "apply", "succeeded", ["committed", "committed"])
    cfg = api.Config(project="p", state=tmp_path / "state.db")
    time.sleep(0.01)

    result = api.prune(
        cfg, before=dt.datetime.now(dt.timezone.utc).isoformat(), confirm=lambda prompt: True
    )

    assert [p.run_id for p in result.pruned] == [done]
    assert [k.run_id for k in result.kept] == [needed] and "pending" in result.kept[0].why
    assert [op["before"] for op in state.ops(needed)] == [b"doc", b"doc"]
    journal_of(state, "apply", "running", ["pending"])  # an apply in flight (or dead)
    journal_of(state, "apply", "succeeded", ["committed"])
    time.sleep(0.01)
    with pytest.raises(StateBusy) as busy:
        api.prune(cfg, before=dt.datetime.now(dt.timezone.utc).isoformat(), confirm=lambda p: True)
    assert busy.value.exit_code == 3 and "fsmigrate upgrade" in str(busy.value)


def test_before_takes_an_age_or_a_date() -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    assert parse_before("90d", now) == now - dt.timedelta(days=90)
    assert parse_before("2026-01-31", now) == dt.datetime(2026, 1, 31, tzinfo=dt.timezone.utc)
    assert parse_before("2026-01-31T10:00:00+02:00", now).utcoffset() == dt.timedelta(hours=2)
    assert parse_before("0d", now) == now  # everything so far
    with pytest.raises(ValueError, match="an age like 90d, 12h or 0d"):
        parse_before("last week", now)
