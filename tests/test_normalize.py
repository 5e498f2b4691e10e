"""Doc-ID normalisation primitives: ctx.rename and ctx.normalize, against the emulator."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess

import pytest

from helpers import Fsm, write_script

T = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def docs(client, collection: str = "things") -> dict[str, dict]:
    return {s.id: s.to_dict() for s in client.collection(collection).stream()}


RENAME = """
from fsmigrate.normalize import keep_newest

def plan(ctx):
    for doc in ctx.scan("things"):
        if doc.id.startswith("old-"):
            yield ctx.rename(doc, doc.id[4:], on_conflict={conflict}, subcollections={subs!r})
"""


def test_rename_without_conflicts_moves_data_exactly(fsm: Fsm, fs_client) -> None:
    fs_client.document("things/old-a").set({"v": 1, "when": T, "raw": b"\x00"})
    fs_client.document("things/old-b").set({"v": 2})
    write_script(fsm.migrations, "0001", None, RENAME.format(conflict='"skip"', subs="refuse"))

    out = fsm.json("upgrade")

    assert docs(fs_client) == {"a": {"v": 1, "when": T, "raw": b"\x00"}, "b": {"v": 2}}
    run = out["migrations"][0]
    assert (run["committed"], run["batches"]) == (4, 1)
    labels = {op["path"]: op for op in run["operations"]}
    assert labels["things/a"]["kind"] == "create" and labels["things/old-a"]["kind"] == "delete"


@pytest.mark.parametrize(
    "conflict,expected",
    [
        ('"skip"', {"old-x": {"v": "old", "t": T}, "x": {"v": "new", "t": T - dt.timedelta(1)}}),
        ('"overwrite"', {"x": {"v": "old", "t": T}}),
        ('keep_newest("t")', {"x": {"v": "old", "t": T}}),
    ],
)
def test_rename_conflicts(fsm: Fsm, fs_client, conflict: str, expected: dict) -> None:
    fs_client.document("things/old-x").set({"v": "old", "t": T})
    fs_client.document("things/x").set({"v": "new", "t": T - dt.timedelta(1)})
    write_script(fsm.migrations, "0001", None, RENAME.format(conflict=conflict, subs="refuse"))

    out = fsm.json("upgrade")

    assert docs(fs_client) == expected
    notes = "\n".join(out["migrations"][0]["notes"])
    assert "CONFLICT things/old-x -> things/x" in notes  # every conflict is reported


def test_keep_newest_keeps_a_newer_target(fsm: Fsm, fs_client) -> None:
    fs_client.document("things/old-x").set({"v": "old", "t": T - dt.timedelta(1)})
    fs_client.document("things/x").set({"v": "new", "t": T})
    write_script(
        fsm.migrations, "0001", None, RENAME.format(conflict='keep_newest("t")', subs="refuse")
    )
    fsm.json("upgrade")
    assert docs(fs_client) == {"x": {"v": "new", "t": T}}


def test_subcollections_refused_moved_or_deleted(fsm: Fsm, fs_client, tmp_path) -> None:
    fs_client.document("things/old-p").set({"v": 1})
    fs_client.document("things/old-p/items/i1").set({"n": 1})
    fs_client.document("things/old-p/items/i1/deep/d1").set({"n": 2})
    for mode in ("refuse", "move"):
        work = Fsm(fsm.project, tmp_path / f"{mode}.db", tmp_path / mode)
        write_script(work.migrations, "0001", None, RENAME.format(conflict='"skip"', subs=mode))
        # each pass is its own "project history": separate markers
        out = work.json("--markers-collection", f"fsm_{mode}", "upgrade")
        if mode == "refuse":
            assert "REFUSED things/old-p -> things/p" in "\n".join(out["migrations"][0]["notes"])
            assert set(docs(fs_client)) == {"old-p"}
    assert set(docs(fs_client)) == {"p"}
    assert fs_client.document("things/p/items/i1").get().to_dict() == {"n": 1}
    assert fs_client.document("things/p/items/i1/deep/d1").get().to_dict() == {"n": 2}
    assert not fs_client.document("things/old-p/items/i1").get().exists
    assert (
        list(fs_client.collection_group("deep").stream())[0].reference.path
        == "things/p/items/i1/deep/d1"
    )


def test_subcollections_deleted_with_archive(fsm: Fsm, fs_client) -> None:
    fs_client.document("things/old-q").set({"v": 1})
    fs_client.document("things/q").set({"v": 9, "t": T})
    fs_client.document("things/old-q/items/i1").set({"n": 1})
    write_script(
        fsm.migrations, "0001", None, RENAME.format(conflict='keep_newest("t")', subs="delete")
    )
    out = fsm.json("upgrade")
    assert docs(fs_client) == {"q": {"v": 9, "t": T}}
    assert not fs_client.document("things/old-q/items/i1").get().exists
    deleted = [op for op in out["migrations"][0]["operations"] if op["kind"] == "delete"]
    assert sorted(op["path"] for op in deleted) == ["things/old-q", "things/old-q/items/i1"]


NORMALIZE = """
import re

from fsmigrate.normalize import keep_newest


def canonical(doc_id):
    m = re.fullmatch(r"([A-Z][a-z]+)(_run_[0-9]+)?", doc_id)
    return m.group(1) if m else None

def plan(ctx):
    yield from ctx.normalize("things", canonical, keep="t",
                             on_conflict=keep_newest("t"),
                             transform=lambda d, new_id: {**d, "name": new_id.lower()})
"""


def test_normalize_merges_each_group_into_its_canonical_id(fsm: Fsm, fs_client) -> None:
    fs_client.document("things/Alpha_run_1").set({"t": T - dt.timedelta(3)})
    fs_client.document("things/Alpha_run_2").set({"t": T})
    fs_client.document("things/Alpha_run_3").set({"t": T - dt.timedelta(1)})
    fs_client.document("things/Alpha").set({"t": T - dt.timedelta(9)})
    fs_client.document("things/Beta_run_1").set({"t": T})
    fs_client.document("things/Gamma").set({"t": T})
    fs_client.document("things/weird id").set({"t": T})
    write_script(fsm.migrations, "0001", None, NORMALIZE)

    dry = fsm.json("upgrade", "--dry-run")["migrations"][0]
    assert sorted((op["kind"], op["path"]) for op in dry["operations"]) == [
        ("create", "things/Beta"),
        ("delete", "things/Alpha_run_1"),
        ("delete", "things/Alpha_run_2"),
        ("delete", "things/Alpha_run_3"),
        ("delete", "things/Beta_run_1"),
        ("set", "things/Alpha"),
    ]
    out = fsm.json("upgrade")

    assert docs(fs_client) == {
        "Alpha": {"t": T, "name": "alpha"},
        "Beta": {"t": T, "name": "beta"},
        "Gamma": {"t": T},
        "weird id": {"t": T},
    }
    assert "unknown ID left alone: 'weird id'" in out["migrations"][0]["notes"]


def test_crash_mid_rename_plan_never_duplicates_or_loses(fsm: Fsm, fs_client) -> None:
    for start in range(0, 1200, 400):
        batch = fs_client.batch()
        for i in range(start, start + 400):
            batch.set(fs_client.document(f"things/old-{i:04d}"), {"i": i})
        batch.commit()
    write_script(fsm.migrations, "0001", None, RENAME.format(conflict='"skip"', subs="refuse"))
    args = fsm.argv("upgrade", "--quiet", "--batch-size", "100")
    killed = subprocess.run(
        args,
        env={**os.environ, "FSMIGRATE_TEST_CRASH": "before-commit:4"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    middle = docs(fs_client)
    ids = {int(k[-4:]) for k in middle}
    assert len(middle) == 1200 and ids == set(range(1200))  # never both, never neither

    resumed = subprocess.run(args, capture_output=True, text=True, check=False)

    assert resumed.returncode == 0, resumed.stderr
    assert docs(fs_client) == {f"{i:04d}": {"i": i} for i in range(1200)}
    db = sqlite3.connect(fsm.state)
    assert db.execute(
        "SELECT MAX(n) FROM (SELECT COUNT(*) n FROM ops WHERE status='committed'"
        " GROUP BY path, kind)"
    ).fetchone() == (1,)
