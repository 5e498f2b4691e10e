"""Snapshot plans (issue 22): every read of a plan is made at one read time (--as-of, by
default the moment the plan starts), recorded in the run, the plan file and the reports;
what is written after it is not seen by the plan, and its apply skips it (the
preconditions), never clobbers it. An --as-of older than Firestore keeps versions is
refused in one line. (The emulator keeps 7 days, like point-in-time recovery: a read
older than that is answered FAILED_PRECONDITION "read_time is too old".)"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from fsmigrate.errors import SnapshotTooOld, UsageError
from fsmigrate.firestore.store import Store, Target
from fsmigrate.times import rfc3339
from helpers import Fsm, items_of, seed_items, write_script

# The plan writes, as an application would, between its first and its last read: after
# its first document it changes one it has not read yet and creates another; then it
# reads both again, by get, get_many and a second scan. Every read must see the
# collection as it was at the read time.
WRITES_DURING_PLAN = """
from google.cloud import firestore

def plan(ctx):
    app = firestore.Client(project=ctx.project)
    first = True
    for doc in ctx.scan("items"):
        if first:
            app.document("items/i00007").set({"n": 999})
            app.document("items/i99999").set({"n": 5})
            first = False
        yield ctx.update(doc, {"double": doc.get("n") * 2})
    seen = ctx.get("items/i00007").get("n")
    many = ctx.get_many(["items/i00007", "items/i99999"])
    again = sorted(d.id for d in ctx.scan("items"))
    ctx.note(f"get {seen}; get_many {many['items/i00007'].get('n')} {many['items/i99999']}; "
             f"scan {len(again)} {'i99999' in again}")
"""


def fsm_for(tmp_path: Path, project_id: str) -> Fsm:
    return Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")


def test_a_plan_reads_at_one_instant_and_its_apply_skips_what_was_written_since(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed_items(fs_client, 20)
    fsm = fsm_for(tmp_path, project_id)
    write_script(fsm.migrations, "0001", None, WRITES_DURING_PLAN)
    plan = tmp_path / "plan.jsonl"

    dry = fsm.json("upgrade", "--dry-run", "--plan-out", str(plan))["migrations"][0]

    # what the collection held at the read time: i00007 with n=7, no i99999
    assert "get 7; get_many 7 None; scan 20 False" in dry["notes"]
    assert dry["counts"]["update"] == 20
    read_time = dry["read_time"]
    assert read_time and read_time < rfc3339(dt.datetime.now(dt.timezone.utc))
    header = json.loads(plan.read_text().splitlines()[0])
    assert header["migrations"][0]["read_time"] == read_time
    lines = [json.loads(line) for line in plan.read_text().splitlines()[1:]]
    assert "items/i99999" not in {line["path"] for line in lines}

    applied = fsm.json("apply", str(plan))["migrations"][0]

    # i00007 changed after the read time: skipped, not clobbered
    assert (applied["committed"], applied["skipped"]) == (19, 1)
    assert applied["read_time"] == read_time  # the apply records the plan's read time
    doc = fs_client.document("items/i00007").get().to_dict()
    assert doc == {"n": 999}
    assert fs_client.document("items/i99999").get().to_dict() == {"n": 5}
    report = fsm("audit", applied["run_id"])
    assert f"read as of {read_time}" in report.stdout


def test_an_apply_plans_at_its_start_and_skips_what_is_written_during_the_plan(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed_items(fs_client, 20)
    fsm = fsm_for(tmp_path, project_id)
    write_script(fsm.migrations, "0001", None, WRITES_DURING_PLAN)

    result = fsm("upgrade")

    assert result.exit_code == 0, result.output
    assert "read as of: " in result.stdout
    assert items_of(fs_client)["i00007"] == 999
    assert fs_client.document("items/i00007").get().to_dict() == {"n": 999}
    assert fs_client.document("items/i00008").get().to_dict() == {"n": 8, "double": 16}


def test_as_of_plans_what_the_collection_held_then(
    tmp_path: Path, project_id: str, emulator, fs_client
) -> None:
    seed_items(fs_client, 5)
    time.sleep(0.05)
    then = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.05)
    fs_client.document("items/i00001").delete()
    fs_client.document("items/i00002").set({"n": 200})
    fsm = fsm_for(tmp_path, project_id)
    write_script(
        fsm.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("items"):
        ctx.note(f"{doc.id}={doc.get('n')}")
        yield ctx.update(doc, {"seen": True})
""",
    )

    dry = fsm.json("upgrade", "--dry-run", "--as-of", rfc3339(then))["migrations"][0]
    age = fsm.json("upgrade", "--dry-run", "--as-of", "0m")["migrations"][0]

    assert dry["read_time"] == rfc3339(then)
    assert [n for n in dry["notes"] if "=" in n] == [f"i0000{i}={i}" for i in range(5)]
    assert [n for n in age["notes"] if "=" in n] == [
        "i00000=0",
        "i00002=200",
        "i00003=3",
        "i00004=4",
    ]


@pytest.mark.parametrize("as_of", ["8d", "2020-01-01T00:00:00Z"])
def test_as_of_beyond_the_kept_versions_is_refused_in_one_line(
    tmp_path: Path, project_id: str, emulator, as_of: str
) -> None:
    fsm = fsm_for(tmp_path, project_id)
    write_script(fsm.migrations, "0001", None, "def plan(ctx):\n    yield from ()\n")

    result = fsm("upgrade", "--dry-run", "--as-of", as_of)

    assert result.exit_code == 2
    assert result.stderr.startswith("FAILED: --as-of ") and len(result.stderr.splitlines()) == 1
    assert "7 days with point-in-time recovery, 1 hour without" in result.stderr
    for bad in ("tomorrow", "1y"):
        refused = fsm("upgrade", "--dry-run", "--as-of", bad)
        assert refused.exit_code == 2 and len(refused.stderr.splitlines()) == 1


def test_a_read_older_than_the_emulator_keeps_is_refused_in_one_line(
    project_id: str, emulator, fs_client
) -> None:
    """What the emulator keeps, found out: 7 days (a read 7 days and a minute back is
    refused, 6 days back is answered)."""
    fs_client.document("items/a").set({"n": 1})
    store = Store(Target(project_id, emulator_host=emulator.host_port))
    now = dt.datetime.now(dt.timezone.utc)

    assert store.get("items/a", read_time=now - dt.timedelta(days=6)) is None  # not yet
    with pytest.raises(SnapshotTooOld) as refused:
        list(store.scan("items", read_time=now - dt.timedelta(days=7, minutes=1)))
    with pytest.raises(SnapshotTooOld):
        store.get("items/a", read_time=now - dt.timedelta(days=8))

    assert "older than the versions the database keeps" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_read_time_ahead_of_firestores_clock_says_to_check_the_clock(
    project_id: str, emulator
) -> None:
    store = Store(Target(project_id, emulator_host=emulator.host_port))
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)

    with pytest.raises(UsageError, match="ahead of Firestore's clock") as refused:
        store.get("items/a", read_time=ahead)

    assert "\n" not in str(refused.value)
