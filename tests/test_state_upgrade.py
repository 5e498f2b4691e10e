"""A state file of schema 3, as fsmigrate 6462d0f made it (tests/data/state-v3), upgraded to
the compact archive (schema 4) on open: nothing lost, and audit, export, restore and resume
work on it after; read-only commands work on it before, without changing it."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from fsmigrate.firestore import codec
from fsmigrate.firestore import emulator as emu
from fsmigrate.state.database import SCHEMA_VERSION, State
from helpers import Fsm

DATA = Path(__file__).parent / "data" / "state-v3"
PROJECT = "fsm-v3-fixture"  # the project the file's runs were recorded for


def copy_v3(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    shutil.copy(DATA / "state.db", path)
    path.chmod(0o600)
    return path


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
    finally:
        db.close()


def test_every_operation_reads_back_the_same_after_the_upgrade(tmp_path: Path) -> None:
    path = copy_v3(tmp_path)
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    old_runs = {r["id"]: dict(r) for r in db.execute("SELECT * FROM runs")}
    old_ops = [dict(r) for r in db.execute("SELECT * FROM ops ORDER BY run_id, seq")]
    old_notes = db.execute("SELECT * FROM notes ORDER BY run_id, seq").fetchall()
    old_applied = db.execute("SELECT * FROM applied").fetchall()
    db.close()
    assert any(op["before"] for op in old_ops) and any(op["status"] == "pending" for op in old_ops)

    state = State.open(path)

    assert version_of(path) == SCHEMA_VERSION
    new_ops = [dict(op) for run_id in sorted(old_runs) for op in state.ops(run_id)]
    assert len(new_ops) == len(old_ops)
    for old, new in zip(old_ops, new_ops, strict=True):
        old["before"] = old["before"] or None  # an empty image (a create) is no image
        assert {k: old[k] for k in new} == new
    for run_id, old in old_runs.items():
        assert {k: v for k, v in dict(state.run(run_id)).items() if k in old} == old
    assert [tuple(r) for r in state.conn.execute("SELECT * FROM notes ORDER BY run_id, seq")] == [
        tuple(r) for r in old_notes
    ]
    assert [tuple(r) for r in state.conn.execute("SELECT * FROM applied")] == [
        tuple(r) for r in old_applied
    ]
    assert "ops_v3" not in {r[0] for r in state.conn.execute("SELECT name FROM sqlite_master")}


@pytest.fixture
def fixture_items():
    spec = importlib.util.spec_from_file_location("make_state_v3", DATA / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.items()


def test_audit_export_restore_and_resume_on_a_schema_3_file(
    tmp_path: Path, emulator, fixture_items
) -> None:
    emu.reset(emulator.host_port, PROJECT)
    path = copy_v3(tmp_path)
    fsm = Fsm(PROJECT, path, DATA / "migrations")
    applied = next(r for r in fsm.json("history")["runs"] if r["kind"] == "plan")["run_id"]

    # read-only commands read the file as it is, and leave it at schema 3
    before_jsonl = fsm("audit", applied, "--format", "jsonl").stdout
    assert fsm("audit", applied, "--export", str(tmp_path / "old.jsonl")).exit_code == 0
    assert version_of(path) == 3
    assert json.loads(before_jsonl.splitlines()[0])["before"]["fields"]["secret"] == "SECRET-v3-0"

    resumed = fsm.json("upgrade")["migrations"]  # upgrades the file, resumes 0002's apply

    assert version_of(path) == SCHEMA_VERSION
    assert [(r["revision"], r["status"]) for r in resumed] == [("0002", "succeeded")]
    assert resumed[0]["resumes"] is not None and any(
        "resumes run" in n for n in resumed[0]["notes"]
    )
    old = fsm.json("audit", resumed[0]["resumes"])
    assert {op["path"]: op["reason"] for op in old["operations"] if op["batch"] == 2} == {
        "more/m2": "landed before the interruption (re-read)",  # gone from the emulator
        "more/m3": "landed before the interruption (re-read)",
    }
    # the audit and the export read the same after the upgrade
    assert fsm("audit", applied, "--format", "jsonl").stdout == before_jsonl
    assert fsm("audit", applied, "--export", str(tmp_path / "new.jsonl")).exit_code == 0
    exported = (tmp_path / "new.jsonl").read_text().splitlines()
    assert len(exported) == 7 and exported == [  # schema 3 also listed a create, without image
        line
        for line in (tmp_path / "old.jsonl").read_text().splitlines()
        if json.loads(line)["before"] is not None
    ]

    restored = fsm.json("restore", applied)["migrations"][0]

    assert restored["status"] == "succeeded" and restored["committed"] == 7
    from google.cloud import firestore

    client = firestore.Client(project=PROJECT)
    for doc_path in ("items/i1", "items/i4", "names/old"):  # deleted, updated, renamed
        assert client.document(doc_path).get().to_dict() == fixture_items[doc_path]
    whole = codec.json_to_document(json.loads(before_jsonl.splitlines()[1])["before"])
    assert codec.document_to_json(whole)["fields"]["when"] == {
        "$timestamp": "1969-07-20T20:17:40.500Z"
    }
