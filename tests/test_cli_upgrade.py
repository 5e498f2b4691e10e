"""End to end through the CLI against the real Firestore emulator."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import sqlite3
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from fsmigrate.firestore import codec
from helpers import Fsm, ops_of, seed_items, write_script

DELETE_OLD = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if doc.get("old"):
            yield ctx.delete(doc)
"""

MARK_NEW = """
def plan(ctx):
    for doc in ctx.scan("items"):
        if not doc.get("old"):
            yield ctx.update(doc, {"seen": True})
"""


def seed(client, n_old: int, n_new: int) -> None:
    seed_items(
        client,
        n_old + n_new,
        lambda i: {"n": i, "old": i < n_old, "tags": ["a", i], "nested": {"x": i * 1.5}},
    )


def ids(client, collection: str = "items") -> set[str]:
    return {ref.id for ref in client.collection(collection).list_documents()}


def test_dry_run_changes_nothing_and_counts(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 7, 5)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    write_script(fsm.migrations, "0002", "0001", MARK_NEW)
    before = {s.id: (s.update_time, s.to_dict()) for s in fs_client.collection("items").stream()}

    out = fsm.json("upgrade", "--dry-run")

    after = {s.id: (s.update_time, s.to_dict()) for s in fs_client.collection("items").stream()}
    assert after == before
    assert out["mode"] == "dry-run"
    m1, m2 = out["migrations"]
    assert (m1["revision"], m1["counts"]["delete"], m1["planned"]) == ("0001", 7, 7)
    assert (m2["revision"], m2["counts"]["update"], m2["committed"]) == ("0002", 5, 0)
    assert sorted(op["path"] for op in m1["operations"]) == [f"items/i{i:05d}" for i in range(7)]
    assert {op["status"] for op in m1["operations"]} == {"planned"}
    # the dry-run is recorded as a run, and nothing is applied
    assert [r["mode"] for r in fsm.json("history")["runs"]] == ["dry-run", "dry-run"]
    status = fsm.json("status")
    assert [r["state"] for r in status["revisions"]] == ["pending", "pending"]


def test_apply_does_exactly_the_plan_then_is_a_no_op(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 7, 5)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    write_script(fsm.migrations, "0002", "0001", MARK_NEW)

    out = fsm.json("upgrade")

    assert ids(fs_client) == {f"i{i:05d}" for i in range(7, 12)}
    for snap in fs_client.collection("items").stream():
        assert snap.get("seen") is True
    assert [(m["revision"], m["committed"], m["status"]) for m in out["migrations"]] == [
        ("0001", 7, "succeeded"),
        ("0002", 5, "succeeded"),
    ]
    again = fsm("upgrade")
    assert again.exit_code == 0
    assert "up to date" in again.stdout
    assert [r["state"] for r in fsm.json("status")["revisions"]] == ["applied", "applied"]
    assert len(fsm.json("history")["runs"]) == 2  # the no-op recorded no run


def test_1234_deletes_go_out_in_batches_of_500_500_234(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 1234, 3)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)

    result = fsm("upgrade", "--quiet")

    assert result.exit_code == 0, result.output
    assert ids(fs_client) == {"i01234", "i01235", "i01236"}
    db = sqlite3.connect(fsm.state)
    sizes = db.execute(
        "SELECT batch, COUNT(*), MIN(status), MAX(status) FROM ops GROUP BY batch ORDER BY batch"
    ).fetchall()
    assert sizes == [
        (1, 500, "committed", "committed"),
        (2, 500, "committed", "committed"),
        (3, 234, "committed", "committed"),
    ]


def test_batch_size_option_is_honoured_and_bounded(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 25, 0)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    assert fsm("upgrade", "--batch-size", "501").exit_code == 2
    out = fsm.json("upgrade", "--batch-size", "10")
    assert out["migrations"][0]["batches"] == 3
    assert ids(fs_client) == set()


def test_every_deleted_document_is_archived_exactly(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 30, 0)
    raw = {}
    api, base = fs_client._firestore_api, fs_client._database_string + "/documents/items/"
    for i in range(30):  # the server's own protobuf of each document, read independently
        raw[f"items/i{i:05d}"] = api.get_document(request={"name": f"{base}i{i:05d}"})
    write_script(fsm.migrations, "0001", None, DELETE_OLD)

    assert fsm("upgrade").exit_code == 0

    rows = [(op["path"], op["before"]) for op in ops_of(fsm.state, status="committed")]
    assert len(rows) == 30
    for path, before in rows:
        archived = codec.bytes_to_document(before)
        assert codec.document_to_json(archived) == codec.document_to_json(raw[path])


DELETE_THEN_TOUCH = """
from google.cloud import firestore

def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
    # someone else writes to one planned document before the batch is committed
    firestore.Client(project=ctx.project).document("items/i00002").update({"touched": True})
"""


def test_document_changed_after_plan_is_skipped_not_clobbered(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 6, 0)
    write_script(fsm.migrations, "0001", None, DELETE_THEN_TOUCH)

    result = fsm("upgrade", "--format", "json")

    assert result.exit_code == 0, result.output
    assert ids(fs_client) == {"i00002"}
    assert fs_client.document("items/i00002").get().get("touched") is True
    run = json.loads(result.stdout)["migrations"][0]
    assert (run["committed"], run["skipped"]) == (5, 1)
    skipped = [op for op in run["operations"] if op["status"] == "skipped"]
    assert [(op["path"], op["reason"]) for op in skipped] == [
        ("items/i00002", "changed since plan")
    ]
    assert "1 operation skipped:" in result.stderr


BLIND_SET = """
def plan(ctx):
    yield ctx.set("items/i00000", {"replaced": True})
    yield ctx.set("items/fresh", {"replaced": True})
    yield ctx.create("items/i00001", {"replaced": True})
"""


def test_blind_set_archives_what_it_overwrites_and_create_never_clobbers(
    fsm: Fsm, fs_client
) -> None:
    seed(fs_client, 3, 0)
    original = fs_client.document("items/i00000").get().to_dict()
    write_script(fsm.migrations, "0001", None, BLIND_SET)

    result = fsm("upgrade", "--format", "json")

    assert result.exit_code == 0, result.output
    assert fs_client.document("items/i00000").get().to_dict() == {"replaced": True}
    assert fs_client.document("items/fresh").get().to_dict() == {"replaced": True}
    assert "replaced" not in fs_client.document("items/i00001").get().to_dict()
    ops = {
        op["path"]: op
        for op in json.loads(
            fsm(
                "audit", json.loads(result.stdout)["migrations"][0]["run_id"], "--format", "json"
            ).stdout
        )["operations"]
    }
    assert ops["items/i00000"]["status"] == "committed"
    before = codec.json_to_document(ops["items/i00000"]["before"])
    assert codec.decode_fields(before.fields, fs_client) == original
    assert ops["items/fresh"]["before"] is None
    assert ops["items/i00001"]["status"] == "skipped"
    assert ops["items/i00001"]["reason"] == "already exists"


FAILS_HALFWAY = """
def plan(ctx):
    for i, doc in enumerate(ctx.scan("items")):
        if i == 7:
            raise RuntimeError("bug in the migration")
        yield ctx.delete(doc)
"""


def test_migration_that_raises_is_recorded_failed_with_one_line_error(
    fsm: Fsm, fs_client, tmp_path
) -> None:
    seed(fs_client, 12, 0)
    write_script(fsm.migrations, "0001", None, FAILS_HALFWAY)

    result = fsm("upgrade", "--batch-size", "5")

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAILED: migration 0001 failed")
    assert "RuntimeError: bug in the migration" in lines[0]
    assert "after 5 committed" in lines[0]
    assert len(ids(fs_client)) == 7  # the first full batch committed, the partial one did not
    run = fsm.json("history")["runs"][0]
    assert (run["status"], run["committed"]) == ("failed", 5)
    assert "bug in the migration" in run["error"]
    assert fsm.json("status")["revisions"][0]["state"] == "failed"


def test_notes_and_markdown_report_list_every_document(fsm: Fsm, fs_client, tmp_path) -> None:
    seed(fs_client, 15, 2)
    write_script(
        fsm.migrations,
        "0001",
        None,
        DELETE_OLD
        + """
    ctx.note("kept the new ones")
""",
    )
    report = tmp_path / "plan.md"

    result = fsm("upgrade", "--dry-run", "--report", str(report))

    assert result.exit_code == 0, result.output
    assert "... and 5 more" in result.stdout  # the terminal shows a sample
    text = report.read_text()
    for i in range(15):
        assert f"`items/i{i:05d}`" in text
    assert "| delete | 15 |" in text
    assert "kept the new ones" in text


@pytest.mark.parametrize("report_name", ["plan.json", "plan.md", "plan.txt"])
def test_the_report_file_and_the_json_output_both_hold_every_operation(
    fsm: Fsm, fs_client, tmp_path, report_name: str
) -> None:
    """--format json with a --report: the JSON on stdout is whole, and the file holds the
    report in its own format (a .json file the same JSON, written once for both)."""
    seed(fs_client, 15, 2)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    report = tmp_path / report_name

    result = fsm("upgrade", "--dry-run", "--format", "json", "--report", str(report))

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    paths = [op["path"] for op in out["migrations"][0]["operations"]]
    assert paths == [f"items/i{i:05d}" for i in range(15)]
    assert f"report written to {report}" in result.stderr
    text = report.read_text()
    if report_name.endswith(".json"):
        assert json.loads(text) == out
    else:
        for i in range(15):
            assert f"items/i{i:05d}" in text
        assert not text.lstrip().startswith("{")


def test_edited_script_fails_verify_and_blocks_upgrade(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 2, 0)
    path = write_script(fsm.migrations, "0001", None, DELETE_OLD)
    assert fsm("upgrade").exit_code == 0
    assert fsm("verify").exit_code == 0

    path.write_text(path.read_text() + "\n# edited\n")
    write_script(fsm.migrations, "0002", "0001", MARK_NEW)

    result = fsm("verify")
    assert result.exit_code == 1
    assert "revision 0001" in result.stdout and "edited after it was applied" in result.stdout
    blocked = fsm("upgrade")
    assert blocked.exit_code == 1
    assert blocked.stderr.startswith("FAILED: revision 0001")
    assert fsm.json("status")["revisions"][1]["state"] == "pending"

    path.unlink()
    (fsm.migrations / "0002_test_0002.py").unlink()
    missing = fsm("verify", "--format", "json")
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["findings"][0]["problem"] == "missing"


def test_state_is_keyed_by_project(tmp_path: Path, emulator, fs_client, project_id) -> None:
    from google.cloud import firestore

    other = project_id + "-b"
    seed(fs_client, 3, 0)
    seed(firestore.Client(project=other), 4, 0)
    a = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    b = Fsm(other, tmp_path / "state.db", tmp_path / "migrations")
    write_script(a.migrations, "0001", None, DELETE_OLD)

    assert a.json("upgrade")["migrations"][0]["committed"] == 3
    assert [r["state"] for r in b.json("status")["revisions"]] == ["pending"]
    assert b.json("upgrade")["migrations"][0]["committed"] == 4
    assert len(a.json("history")["runs"]) == 1 and len(b.json("history")["runs"]) == 1


def test_to_stops_after_the_given_revision(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3, 2)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    write_script(fsm.migrations, "0002", "0001", MARK_NEW)

    out = fsm.json("upgrade", "--to", "0001")

    assert [m["revision"] for m in out["migrations"]] == ["0001"]
    assert [r["state"] for r in fsm.json("status")["revisions"]] == ["applied", "pending"]
    assert all(s.to_dict().get("seen") is None for s in fs_client.collection("items").stream())


GROUP_SCANS = """
def plan(ctx):
    for doc in ctx.scan("events", group=True):
        yield ctx.delete(doc)
    for doc in ctx.scan("events", group=True):
        pass
"""


def test_concurrency_applies_everything_once_and_says_once_that_partitions_fell_back(
    fsm: Fsm, fs_client
) -> None:
    for start in range(0, 1200, 400):
        batch = fs_client.batch()
        for i in range(start, start + 400):
            batch.set(fs_client.document(f"users/u{i % 4}/events/e{i:04d}"), {"i": i})
        batch.commit()
    write_script(fsm.migrations, "0001", None, GROUP_SCANS)

    out = fsm.json("upgrade", "--concurrency", "4", "--batch-size", "100")

    run = out["migrations"][0]
    assert (run["committed"], run["batches"]) == (1200, 12)
    assert sum("does not support PartitionQuery" in n for n in run["notes"]) == 1
    assert list(fs_client.collection_group("events").stream()) == []
    db = sqlite3.connect(fsm.state)
    assert db.execute(
        "SELECT COUNT(DISTINCT path) FROM ops WHERE status='committed'"
    ).fetchone() == (1200,)


def _run_on_a_terminal(args: list[str]) -> str:
    """Run the CLI with stdout/stderr on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 cols
    proc = subprocess.Popen(
        [sys.executable, "-m", "fsmigrate", *args],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_and_not_with_quiet(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 1200, 0)
    write_script(fsm.migrations, "0001", None, DELETE_OLD)
    base = [
        "--project",
        fsm.project,
        "--state",
        str(fsm.state),
        "--migrations",
        str(fsm.migrations),
        "upgrade",
    ]

    quiet = _run_on_a_terminal(base + ["--dry-run", "--quiet"])
    shown = _run_on_a_terminal(base)

    assert "doc/s" not in quiet and "DRY-RUN" in quiet
    assert "0001 apply" in shown and "doc/s" in shown
    assert "100%" in shown and "1200/1200" in shown  # the total from a COUNT before the scan
