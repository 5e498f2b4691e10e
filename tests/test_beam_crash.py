"""A Beam coordinator that dies mid-run (its machine, its CI job): what its workers
committed is brought into the state file by the next command, before it plans
(fsmigrate.beam.journal). Each case kills a real `fsmigrate upgrade --runner beam` with
SIGKILL at a chosen instant, then runs the same command again and checks the archive
promise: every document gone from Firestore has a committed delete with its before-image
in some run's audit, nothing is recorded or applied twice, and no journal is left."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_beam import BUMP, expected_items  # the per-document migration of the Beam tests

from fsmigrate import api
from fsmigrate.scripts.operations import parse_timestamp
from helpers import Fsm, seed_items, wait_for, write_script
from helpers import items_of as items

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
pytest.importorskip(
    "apache_beam", reason="the beam extra is not installed: pip install 'fsmigrate[beam]'"
)

TESTS = Path(__file__).resolve().parent
N = 1200
BATCH = 100
BEAM = ("upgrade", "--runner", "beam", "--workers", "2", "--batch-size", str(BATCH), "--quiet")


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    write_script(fsm.migrations, "0001", None, BUMP)
    return fsm


def cfg_of(fsm: Fsm) -> api.Config:
    return api.Config(project=fsm.project, state=fsm.state, migrations=fsm.migrations)


def start(argv: list[str], **env: str) -> subprocess.Popen:
    """The command in a process group of its own (the coordinator and its workers: the
    machine that dies)."""
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def outcomes(root: Path) -> list[Path]:
    return list(root.glob("*/batch-*.outcome.json"))


def kill_after_outcomes(proc: subprocess.Popen, root: Path, n: int) -> None:
    """SIGKILL the whole process group once `n` batches have their outcome files."""
    try:
        wait_for(lambda: len(outcomes(root)) >= n or proc.poll() is not None, timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"


def audited(cfg: api.Config) -> dict[str, list[tuple[str, str, str, bool]]]:
    """Every operation of every run of the target: path -> [(run, kind, status, archived)]."""
    found: dict[str, list[tuple[str, str, str, bool]]] = {}
    for run in api.history(cfg):
        for line in "".join(api.audit(cfg, run.run_id).chunks("jsonl")).splitlines():
            op = json.loads(line)
            found.setdefault(op["path"], []).append(
                (run.run_id, op["kind"], op["status"], op["before"] is not None)
            )
    return found


def assert_accounted_for(fsm: Fsm, fs_client, killed: str) -> None:
    """The archive promise after the kill and the same command again."""
    cfg = cfg_of(fsm)
    assert items(fs_client) == expected_items(N)  # every write applied, and once
    ops = audited(cfg)
    gone = {f"items/i{i:05d}" for i in range(N) if i % 3 == 0}
    for path in gone:  # gone from Firestore: a committed, archived delete, exactly one
        committed = [op for op in ops[path] if op[2] == "committed"]
        assert len(committed) == 1 and committed[0][1] == "delete" and committed[0][3], path
    committed = [op for path in ops for op in ops[path] if op[2] == "committed"]
    assert len(committed) == N == len({op for op in ops if ops[op]})  # nothing twice
    by_killed = [op for op in committed if op[0] == killed]
    assert by_killed, "the killed run's workers committed nothing before the kill"
    deleted_by_killed = sum(op[1] == "delete" for op in by_killed)
    for run in api.history(cfg):  # the counts add up, run by run
        assert run.planned == run.committed + run.skipped + run.failed, run.run_id
    rows = {r.run_id: r for r in api.history(cfg)}
    assert rows[killed].status == "interrupted" and rows[killed].committed == len(by_killed)
    restore = api.restore(cfg, killed, dry_run=True).runs[0]  # lists what it deleted
    assert restore.planned == deleted_by_killed
    journal_root = Path(str(fsm.state) + ".journal")
    assert not [p for p in journal_root.glob("*") if p.is_dir()]  # no journal left


def killed_run(fsm: Fsm) -> str:
    runs = api.history(cfg_of(fsm))
    assert len(runs) == 1 and runs[0].status == "running"
    return runs[0].run_id


@pytest.mark.long
def test_a_coordinator_killed_mid_pipeline_is_imported_by_the_same_command(
    fsm: Fsm, fs_client
) -> None:
    seed_items(fs_client, N)
    journal_root = Path(str(fsm.state) + ".journal")
    proc = start(fsm.argv(*BEAM), FSMIGRATE_TEST_PAUSE="before-commit:0.4")
    kill_after_outcomes(proc, journal_root, 3)
    killed = killed_run(fsm)
    left = items(fs_client)
    assert sum(1 for i in range(N) if f"i{i:05d}" not in left) > 0  # deleted before the kill

    status = fsm("status")
    assert status.exit_code == 0 and f"Beam run {killed}" in status.stderr + status.stdout
    assert "unimported" in status.output and "run the same command again" in status.output
    verify = fsm("verify", "--format", "json")
    assert verify.exit_code == 1
    body = json.loads(verify.stdout)
    assert [f["problem"] for f in body["findings"]] == ["unimported journal"]

    again = fsm(*BEAM)

    assert again.exit_code == 0, again.output
    assert f"of interrupted Beam run {killed}" in again.output
    assert_accounted_for(fsm, fs_client, killed)
    assert fsm("verify").exit_code == 0


@pytest.mark.long
def test_a_killed_coordinators_journal_is_imported_from_another_state_file(
    fsm: Fsm, fs_client, tmp_path: Path
) -> None:
    """The launcher's machine is gone, and its state file with it: another operator (or
    CI job), with a state file of their own, finds the journal through the database's
    record, adopts the killed run and imports its workers' commits under it."""
    seed_items(fs_client, N)
    journal_root = Path(str(fsm.state) + ".journal")
    proc = start(fsm.argv(*BEAM), FSMIGRATE_TEST_PAUSE="before-commit:0.4")
    kill_after_outcomes(proc, journal_root, 3)
    killed = killed_run(fsm)
    records = fs_client.collection("_fsmigrate/meta/journals")
    assert [doc.id for doc in records.list_documents()] == [killed]
    other = Fsm(fsm.project, tmp_path / "elsewhere" / "state.db", fsm.migrations)
    other.state.parent.mkdir()

    again = other(*BEAM)

    assert again.exit_code == 0, again.output
    assert re.search(rf"of interrupted Beam run {killed} \(launched by \S+@\S+\)", again.output)
    assert_accounted_for(other, fs_client, killed)
    assert not [p for p in journal_root.glob("*") if p.is_dir()]  # imported, then removed
    assert list(records.list_documents()) == []
    adopted = next(r for r in api.history(cfg_of(other)) if r.run_id == killed)
    assert adopted.revision == "0001" and adopted.resumes is None
    # the first operator's next command: nothing left to import, the migration applied
    first = fsm(*BEAM)
    assert first.exit_code == 0, first.output
    assert "up to date" in first.output


def test_a_coordinator_killed_right_after_recording_its_journal_leaves_nothing_unread(
    fsm: Fsm, fs_client, tmp_path: Path
) -> None:
    """Killed right after the journal's record is in the database, before any worker ran:
    a command with another state file finds the (empty) journal where the record says,
    adopts the run with nothing in it, warns of nothing unreadable, and does the work."""
    seed_items(fs_client, N)
    proc = start(fsm.argv(*BEAM), FSMIGRATE_TEST_CRASH_GROUP="journal-published:0")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    killed = killed_run(fsm)
    records = fs_client.collection("_fsmigrate/meta/journals")
    assert [doc.id for doc in records.list_documents()] == [killed]
    other = Fsm(fsm.project, tmp_path / "elsewhere" / "state.db", fsm.migrations)
    other.state.parent.mkdir()

    again = other(*BEAM)

    assert again.exit_code == 0, again.output
    assert f"imported 0 batches (0 operations) of interrupted Beam run {killed}" in again.output
    assert "cannot be read" not in again.output
    assert items(fs_client) == expected_items(N)
    assert list(records.list_documents()) == []
    runs = {r.run_id: r for r in api.history(cfg_of(other))}
    assert runs[killed].status == "interrupted" and runs[killed].planned == 0


def test_a_journal_that_cannot_be_read_here_is_named_not_adopted(
    fsm: Fsm, fs_client, tmp_path: Path
) -> None:
    """A journal on the dead launcher's own disk cannot be imported from another machine:
    a command that takes the lease says so (the record stays, for each next one and for
    the command run where it can be read); nothing is adopted."""
    seed_items(fs_client, 10)
    gone = tmp_path / "launchers-disk" / "state.db.journal" / "20261201T000000Z-abcdef"
    fs_client.document("_fsmigrate/meta/journals/20261201T000000Z-abcdef").set(
        {"run_id": "20261201T000000Z-abcdef", "location": str(gone), "keep": False,
         "revision": "0001", "checksum": "x", "operator": "alice", "host": "laptop2"}
    )  # fmt: skip

    result = fsm("upgrade")
    assert result.exit_code == 0, result.output
    assert (
        "the journal of Beam run 20261201T000000Z-abcdef (alice@laptop2, revision 0001)"
        f" is at {gone}, which cannot be read from here" in " ".join(result.output.split())
    )
    assert "20261201T000000Z-abcdef" not in {r.run_id for r in api.history(cfg_of(fsm))}
    assert fs_client.document("_fsmigrate/meta/journals/20261201T000000Z-abcdef").get().exists
    status = fsm("status")  # status and verify read the record too
    assert "Beam run 20261201T000000Z-abcdef (revision 0001, running)" in status.output
    verify = fsm("verify", "--format", "json")
    assert verify.exit_code == 1
    assert [f["problem"] for f in json.loads(verify.stdout)["findings"]] == ["unimported journal"]


@pytest.mark.long
def test_a_batch_committed_without_its_outcome_is_settled_by_re_reading(
    fsm: Fsm, fs_client
) -> None:
    seed_items(fs_client, N)
    # the machine dies right after a worker's second commit, before its outcome file
    proc = start(fsm.argv(*BEAM), FSMIGRATE_TEST_CRASH_GROUP="after-commit:2")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    killed = killed_run(fsm)
    journal = Path(str(fsm.state) + ".journal") / killed
    done = {p.name[: -len(".outcome.json")] for p in journal.glob("batch-*.outcome.json")}
    batches = {p.name[: -len(".batch")] for p in journal.glob("batch-*.batch")}
    assert batches - done  # a batch journaled, sent, committed, and no outcome file

    again = fsm(*BEAM)

    assert again.exit_code == 0, again.output
    assert_accounted_for(fsm, fs_client, killed)
    audit = "".join(api.audit(cfg_of(fsm), killed).chunks("text"))
    assert "landed before its coordinator stopped (re-read)" in audit


@pytest.mark.long
def test_a_coordinator_killed_halfway_through_its_own_import(fsm: Fsm, fs_client) -> None:
    seed_items(fs_client, N)
    # the pipeline ends; the coordinator dies after recording 5 of its workers' batches
    proc = start(fsm.argv(*BEAM), FSMIGRATE_TEST_CRASH="import-batch:5")
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    killed = killed_run(fsm)
    recorded = api.history(cfg_of(fsm))[0]
    assert (recorded.batches, 0 < recorded.planned <= 5 * BATCH) == (5, True)

    again = fsm(*BEAM)

    assert again.exit_code == 0, again.output
    assert re.search(
        rf"imported \d+ batches \({N:,} operations\) of interrupted Beam run {killed}",
        again.output,
    )
    assert_accounted_for(fsm, fs_client, killed)
    # the whole migration was done by the killed run's workers: the next run did nothing
    runs = api.history(cfg_of(fsm))
    assert [r.committed for r in runs if r.kind == "upgrade"] == [0, N]


@pytest.mark.long
def test_a_journal_on_a_non_local_filesystem_is_imported_after_a_kill(
    fsm: Fsm, fs_client, tmp_path: Path, monkeypatch
) -> None:
    import beamfs

    seed_items(fs_client, N)
    fs_root = tmp_path / "object-store"
    fs_root.mkdir()
    monkeypatch.setenv("FSMIGRATE_TEST_FS_ROOT", str(fs_root))
    options = (
        "--beam-option",
        "journal=fsmtest://bucket/journal",
        "--beam-option",
        "direct_running_mode=in_memory",  # the workers in the coordinator's process,
        "--beam-option",  # which has the fsmtest filesystem
        "direct_num_workers=1",
    )
    code = "import sys, beamfs; from fsmigrate.cli import main; main()"
    argv = [sys.executable, "-c", code, *fsm.argv(*BEAM, *options)[3:]]
    proc = start(
        argv,
        PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        FSMIGRATE_TEST_PAUSE="before-commit:0.3",
    )
    kill_after_outcomes(proc, fs_root / "bucket" / "journal", 3)
    killed = killed_run(fsm)
    location = api.verify(cfg_of(fsm), local=True)[0].message
    assert f"fsmtest://bucket/journal/{killed}" in location
    assert beamfs.SCHEME  # (registered in this process too: the next command reads it)

    again = fsm(*BEAM, *options)

    assert again.exit_code == 0, again.output
    assert f"of interrupted Beam run {killed}" in again.output
    assert_accounted_for(fsm, fs_client, killed)
    assert not list((fs_root / "bucket" / "journal").glob(f"{killed}*"))


def test_workers_whose_coordinator_is_gone_stop_committing_when_its_lease_lapses(
    fsm: Fsm, fs_client, tmp_path: Path, monkeypatch
) -> None:
    """On Dataflow the job runs on after its launcher died: its workers commit only while
    the lease the coordinator no longer renews is good, then stop (LockLost)."""
    from fsmigrate.beam import pipeline as bp
    from fsmigrate.errors import LockLost

    seed_items(fs_client, 1000)
    ttl = 3.0
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ttl)
    fs_client.document("_fsmigrate/lock").set({"holder": "gone", "expires_at": expires})
    spec = bp.WorkerSpec(
        project=fsm.project,
        database="(default)",
        emulator_host=os.environ["FIRESTORE_EMULATOR_HOST"],
        markers_root="_fsmigrate",
        revision="0001",
        script_path=str(fsm.migrations / "0001_test_0001.py"),
        script_source=(fsm.migrations / "0001_test_0001.py").read_bytes(),
        journal_dir=str(tmp_path / "journal"),
        dry_run=False,
        capture_writes=False,
        batch_size=50,
        batch_bytes=4_000_000,
        buckets=1,
        lease_holder="gone",
        lock_ttl=ttl,
    )
    monkeypatch.setenv("FSMIGRATE_TEST_PAUSE", "before-commit:0.5")  # 20 batches: 10 s
    worker = bp.ApplyEach(spec)
    worker.setup()

    with pytest.raises(LockLost, match="the coordinator's lease is gone"):
        list(worker.process((0, None, None)))

    done = [json.loads(p.read_text()) for p in (tmp_path / "journal").glob("*.outcome.json")]
    assert 0 < len(done) < 20  # it committed while the lease was good, then stopped
    times = [parse_timestamp(when) for d in done for _, when in d["committed"]]
    assert max(times) < expires  # every commit landed before the lease's expiry
    now = items(fs_client)
    touched = sum(1 for i in range(1000) if now.get(f"i{i:05d}", -1) != i)
    assert touched == len(times)  # and nothing else was written
