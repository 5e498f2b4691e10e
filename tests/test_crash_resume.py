"""Crash safety: a real apply killed with SIGKILL mid-run, then resumed by the next upgrade."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess

import pytest

from fsmigrate.firestore import codec
from helpers import Fsm, ops_of, seed_docs, seed_items, write_script

N = 5000
DELETE_ALL = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
"""


def seed(client, n: int) -> dict[str, dict]:
    return seed_items(
        client,
        n,
        lambda i: {"n": i, "name": f"item {i}", "tags": [i % 7, "x"], "nested": {"half": i / 2}},
    )


def run_cli(fsm: Fsm, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        fsm.argv(*args),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    write_script(fsm.migrations, "0001", None, DELETE_ALL)
    return fsm


@pytest.mark.long
@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_sigkill_during_third_batch_then_resume(fsm: Fsm, fs_client, point: str) -> None:
    original = seed(fs_client, N)

    killed = run_cli(fsm, "upgrade", "--quiet", FSMIGRATE_TEST_CRASH=f"{point}:3")

    assert killed.returncode == -signal.SIGKILL
    db = sqlite3.connect(fsm.state)
    assert db.execute("SELECT status FROM runs").fetchall() == [("running",)]
    assert db.execute(
        "SELECT batch, COUNT(*) FROM ops WHERE status='pending' GROUP BY batch"
    ).fetchall() == [(3, 500)]  # journaled before it was sent
    left = len(list(fs_client.collection("items").list_documents()))
    assert left == (N - 1000 if point == "before-commit" else N - 1500)

    resumed = run_cli(fsm, "upgrade", "--quiet", "--format", "json")

    assert resumed.returncode == 0, resumed.stderr
    assert list(fs_client.collection("items").list_documents()) == []
    runs = db.execute("SELECT id, status, resumes FROM runs ORDER BY started_at").fetchall()
    assert [(status) for _, status, _ in runs] == ["interrupted", "succeeded"]
    assert runs[1][2] == runs[0][0]  # the second run says which one it finished
    # no operation ran twice: every document was deleted by exactly one committed operation
    per_path = db.execute(
        "SELECT path, COUNT(*) FROM ops WHERE status='committed' GROUP BY path"
    ).fetchall()
    assert len(per_path) == N and {n for _, n in per_path} == {1}
    # ... and every deleted document has its full archived copy
    for op in ops_of(fsm.state, status="committed"):
        path, doc = op["path"], codec.bytes_to_document(op["before"])
        assert codec.decode_fields(doc.fields, fs_client) == original[path]
    reasons = {op["reason"] for op in ops_of(fsm.state, runs[0][0]) if op["batch"] == 3}
    if point == "after-commit":  # batch 3 had landed: found by re-reading, not resent
        assert reasons == {"landed before the interruption (re-read)"}
    else:  # batch 3 never reached Firestore: resent by the second run
        assert reasons == {f"not applied before the interruption; redone by run {runs[1][0]}"}
    assert db.execute("SELECT revision, run_id FROM applied").fetchall() == [("0001", runs[1][0])]
    history = json.loads(run_cli(fsm, "history", "--format", "json").stdout)["runs"]
    assert [r["status"] for r in history] == ["succeeded", "interrupted"]


COUNTER = """
from google.cloud import firestore

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.update(doc, {"n": doc.get("n") + 1000})
"""


def test_resume_does_not_replan_what_committed(fsm: Fsm, fs_client) -> None:
    """A non-idempotent migration (n += 1000): after the crash, the rerun re-plans from the
    current data, yet documents whose update committed are not updated a second time."""
    seed(fs_client, 1500)
    (fsm.migrations / "0001_test_0001.py").unlink()
    write_script(fsm.migrations, "0001", None, COUNTER)

    killed = run_cli(
        fsm, "upgrade", "--quiet", "--batch-size", "400", FSMIGRATE_TEST_CRASH="after-commit:2"
    )
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(fsm, "upgrade", "--quiet", "--batch-size", "400")

    assert resumed.returncode == 0, resumed.stderr
    values = sorted(s.get("n") for s in fs_client.collection("items").stream())
    assert values == [i + 1000 for i in range(1500)]


FAILS_AT_7 = """
def plan(ctx):
    for i, doc in enumerate(ctx.scan("items")):
        if i == 7 and not ctx.project.endswith("-fixed"):
            raise RuntimeError("bug in the migration")
        yield ctx.delete(doc)
"""


def test_failed_migration_blocks_until_fixed_or_resolved(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 12)
    script = fsm.migrations / "0001_test_0001.py"
    script.unlink()
    write_script(fsm.migrations, "0001", None, FAILS_AT_7)

    first = fsm("upgrade", "--batch-size", "5")
    assert first.exit_code == 1 and "bug in the migration" in first.stderr
    again = fsm("upgrade", "--batch-size", "5")
    assert again.exit_code == 1
    line = again.stderr.strip()
    assert "\n" not in line and "fix the script and run upgrade again" in line
    assert "fsmigrate resolve 0001 --reason" in line
    assert len(list(fs_client.collection("items").list_documents())) == 7  # nothing more ran

    script.write_text(script.read_text().replace("i == 7", "i == -1"))  # the fix
    fixed = fsm("upgrade", "--format", "json")
    assert fixed.exit_code == 0, fixed.output
    run = json.loads(fixed.stdout)["migrations"][0]
    assert run["committed"] == 7 and run["notes"][0].startswith("resumes run")
    assert list(fs_client.collection("items").list_documents()) == []


def test_resolve_marks_applied_with_reason(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 12)
    (fsm.migrations / "0001_test_0001.py").unlink()
    write_script(fsm.migrations, "0001", None, FAILS_AT_7)
    assert fsm("upgrade").exit_code == 1
    assert fsm("resolve", "0001").exit_code == 2  # --reason is required

    resolved = fsm("resolve", "0001", "--reason", "finished by hand, INC-42")

    assert resolved.exit_code == 0, resolved.output
    assert fsm.json("status")["revisions"][0]["state"] == "applied"
    last = fsm.json("history")["runs"][0]
    assert (last["revision"], last["status"]) == ("0001", "succeeded")
    assert last["notes"] == ["resolved without running: finished by hand, INC-42"]
    assert fsm("resolve", "0001", "--reason", "again").exit_code == 2


SUBTREE_ALL = """
def plan(ctx):
    yield ctx.delete(ctx.get("users/u1"), subcollections="delete")
"""


def subtree(n: int) -> dict[str, dict]:
    """users/u1 and `n` documents under it, on three levels."""
    docs: dict[str, dict] = {"users/u1": {"name": "one"}}
    i = 0
    while len(docs) < n + 1:
        docs[f"users/u1/events/e{i:05d}"] = {"n": i, "nested": {"half": i / 2}}
        if i % 5 == 0 and len(docs) < n + 1:
            docs[f"users/u1/events/e{i:05d}/parts/p0"] = {"n": i}
        i += 1
    return docs


@pytest.mark.long
@pytest.mark.parametrize("point", ["before-commit", "after-commit"])
def test_sigkill_between_journal_and_commit_of_a_subtree_delete_then_resume(
    fsm: Fsm, fs_client, point: str
) -> None:
    """A subtree delete streamed in batches of 100, killed when its third batch is
    journaled but not sent (or sent but not recorded): the next upgrade settles that
    batch and deletes the rest; every document deleted once, archived whole, the parent
    last."""
    (fsm.migrations / "0001_test_0001.py").unlink()
    write_script(fsm.migrations, "0001", None, SUBTREE_ALL)
    original = seed_docs(fs_client, subtree(1200))
    args = ("upgrade", "--quiet", "--batch-size", "100")

    killed = run_cli(fsm, *args, FSMIGRATE_TEST_CRASH=f"{point}:3")

    assert killed.returncode == -signal.SIGKILL
    db = sqlite3.connect(fsm.state)
    assert db.execute(
        "SELECT batch, COUNT(*) FROM ops WHERE status='pending' GROUP BY batch"
    ).fetchall() == [(3, 100)]  # journaled before it was sent
    left = sum(1 for p in original if fs_client.document(p).get().exists)
    assert left == len(original) - (200 if point == "before-commit" else 300)
    assert fs_client.document("users/u1").get().exists  # the parent goes last

    resumed = run_cli(fsm, *args)

    assert resumed.returncode == 0, resumed.stderr
    assert not any(fs_client.document(p).get().exists for p in original)
    per_path = db.execute(
        "SELECT path, COUNT(*) FROM ops WHERE status='committed' GROUP BY path"
    ).fetchall()
    assert sorted(p for p, _ in per_path) == sorted(original) and {n for _, n in per_path} == {1}
    committed = ops_of(fsm.state, status="committed")
    for op in committed:
        doc = codec.bytes_to_document(op["before"])
        assert codec.decode_fields(doc.fields, fs_client) == original[op["path"]]
    runs = [r for (r,) in db.execute("SELECT id FROM runs ORDER BY started_at")]
    reasons = {op["reason"] for op in ops_of(fsm.state, runs[0]) if op["batch"] == 3}
    if point == "after-commit":
        assert reasons == {"landed before the interruption (re-read)"}
    else:
        assert reasons == {f"not applied before the interruption; redone by run {runs[1]}"}
    last = ops_of(fsm.state, runs[1], status="committed")[-1]
    assert last["path"] == "users/u1"
