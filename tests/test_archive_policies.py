"""What a run keeps of the documents it changes: `archive = "full"` (default), `"paths"`
(nothing of them: erasure migrations) or a function that redacts fields. Shown in the
dry-run report, the plan file header and the audit; restore says what it cannot do."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

from fsmigrate.state import compact
from helpers import ops_of, seed_docs, write_script

ERASE = """
from google.cloud import firestore

archive = {policy}

def plan(ctx):
    for doc in ctx.scan("users"):
        if doc.get("gone"):
            yield ctx.delete(doc)
        else:
            yield ctx.update(doc, {{"email": firestore.DELETE_FIELD}})
"""
REDACT = '''
def drop_email(data):
    """Keep everything but the e-mail address."""
    return {k: v for k, v in data.items() if k != "email"}
'''
WHEN = dt.datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=dt.timezone.utc)
SECRET = os.urandom(12_000)  # incompressible: an archived copy keeps long runs of it as is


def seed(client) -> dict[str, dict]:
    docs = {
        f"users/u{i}": {
            "email": f"person{i}-ERASE-ME@example.com",
            "blob": SECRET,
            "since": WHEN,
            "gone": i < 2,
        }
        for i in range(4)
    }
    return seed_docs(client, docs)


def raw_bytes(*paths: Path) -> bytes:
    found = []
    for path in paths:
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists():
                found.append(p.read_bytes())
    return b"".join(found)


def leaks(raw: bytes) -> list[str]:
    """Which of the documents' values occur in `raw` (a piece of the random blob is enough)."""
    found = [f"email {i}" for i in range(4) if f"person{i}-ERASE-ME".encode() in raw]
    if any(SECRET[i : i + 32] in raw for i in range(0, len(SECRET) - 32, 32)):
        found.append("blob")
    return found


def block_contents(state: Path) -> bytes:
    """Every block of the state file, decompressed (what the raw file hides by zlib)."""
    db = sqlite3.connect(state)
    out = b""
    for (data,) in db.execute("SELECT data FROM blocks"):
        for parts in compact.unpack(data).values():
            out += (parts.before or b"") + (parts.write or b"") + (parts.after or "").encode()
    db.close()
    return out


def test_paths_keeps_no_value_in_the_state_file_the_plan_or_an_export(
    fsm, fs_client, tmp_path
) -> None:
    seed(fs_client)
    write_script(fsm.migrations, "0001", None, ERASE.format(policy='"paths"'))
    plan = tmp_path / "plan.jsonl"
    dry = fsm("upgrade", "--dry-run", "--plan-out", str(plan))
    assert dry.exit_code == 0 and "archive: paths and update times only" in dry.stdout
    header = json.loads(plan.read_text().splitlines()[0])
    assert header["migrations"][0]["archive"] == "paths"

    run = fsm.json("apply", str(plan))["migrations"][0]

    assert (run["committed"], run["archive_policy"]) == (4, "paths")
    assert leaks(raw_bytes(fsm.state, plan)) == []
    assert leaks(block_contents(fsm.state)) == []  # not even compressed
    assert all(op["before"] is None for op in ops_of(fsm.state))
    kept = ops_of(fsm.state, run["run_id"])  # paths and update times are what remain
    assert [op["path"] for op in kept] == [f"users/u{i}" for i in range(4)]
    assert all('"update_time"' in op["precondition"] for op in kept)
    audit = fsm.json("audit", run["run_id"])
    assert audit["archive_policy"] == "paths"
    assert (
        "paths and update times only" in fsm("audit", run["run_id"], "--format", "markdown").stdout
    )
    export = fsm("audit", run["run_id"], "--export", str(tmp_path / "x.jsonl"))
    assert export.exit_code == 1 and 'archive = "paths"' in export.stderr
    assert not (tmp_path / "x.jsonl").exists()
    restore = fsm("restore", run["run_id"])
    assert restore.exit_code == 1
    assert (
        "none of the 4 documents" in restore.stderr
        and "users/u0, users/u1" in restore.stderr
        and len(restore.stderr.strip().splitlines()) == 1
    )


def test_a_redacting_function_archives_and_restores_only_what_it_keeps(fsm, fs_client) -> None:
    docs = seed(fs_client)
    write_script(fsm.migrations, "0001", None, REDACT + ERASE.format(policy="drop_email"))
    dry = fsm.json("upgrade", "--dry-run")["migrations"][0]
    assert dry["archive_policy"] == "redact:drop_email"

    run = fsm.json("upgrade")["migrations"][0]

    assert leaks(block_contents(fsm.state)) == ["blob"]  # the kept field, not the e-mails
    images = fsm.json("audit", run["run_id"])["operations"]
    assert {op["path"]: sorted(op["before"]["fields"]) for op in images} == {
        path: ["blob", "gone", "since"] for path in docs
    }
    assert images[0]["before"]["fields"]["since"] == {"$timestamp": "2001-02-03T04:05:06.789Z"}
    assert "redacted copies (archive = drop_email)" in fsm("audit", run["run_id"]).stdout

    restored = fsm("restore", run["run_id"], "--format", "json")

    assert restored.exit_code == 0, restored.stderr
    assert "WARNING:" in restored.stderr and "drop_email" in restored.stderr
    ops = json.loads(restored.stdout)["migrations"][0]["operations"]
    assert [(op["path"], op["label"]) for op in ops] == [
        (f"users/u{i}", "from a redacted copy (drop_email): only the fields it kept")
        for i in range(2)
    ]  # the deleted ones; the updated ones exist
    back = fs_client.document("users/u0").get().to_dict()
    assert back == {k: v for k, v in docs["users/u0"].items() if k != "email"}


def test_an_archive_function_that_fails_stops_the_dry_run_and_a_bad_policy_is_refused(
    fsm, fs_client
) -> None:
    seed(fs_client)
    write_script(fsm.migrations, "0001", None, ERASE.format(policy="lambda data: 1 / 0"))
    dry = fsm("upgrade", "--dry-run")
    assert dry.exit_code == 1 and "archive function" in dry.stderr
    assert "ZeroDivisionError" in dry.stderr
    write_script(fsm.migrations, "0001", None, ERASE.format(policy='"none"'))
    bad = fsm("upgrade", "--dry-run")
    assert bad.exit_code == 1 and "`archive` must be" in bad.stderr


def test_a_dry_run_keeps_counts_and_notes_not_copies(fsm, fs_client) -> None:
    seed(fs_client)
    write_script(fsm.migrations, "0001", None, ERASE.format(policy='"full"'))

    dry = fsm.json("upgrade", "--dry-run")

    assert [op["path"] for op in dry["migrations"][0]["operations"]] == [
        f"users/u{i}" for i in range(4)
    ]  # its report lists every document
    run_id = dry["migrations"][0]["run_id"]
    db = sqlite3.connect(fsm.state)
    assert db.execute("SELECT COUNT(*) FROM ops").fetchone() == (0,)
    assert db.execute("SELECT COUNT(*) FROM blocks").fetchone() == (0,)
    assert leaks(raw_bytes(fsm.state)) == []
    audit = fsm("audit", run_id)
    assert "operations: not kept" in audit.stdout
    assert fsm.json("audit", run_id)["planned"] == 4
