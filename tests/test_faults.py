"""Real faults between fsmigrate and Firestore: a TCP proxy on loopback that resets, stalls
or refuses connections, and an emulator stopped and restarted during a run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.cloud import firestore

from faultproxy import FaultProxy
from fsmigrate.engine.runner import Runner
from fsmigrate.errors import TransientError
from fsmigrate.firestore import emulator as emu
from fsmigrate.firestore.store import RetryPolicy, Store, Target
from fsmigrate.scripts.loader import Script, build_chain
from fsmigrate.state.database import State
from helpers import Fsm, seed_items, write_script

FAST = RetryPolicy(patience=30, initial=0.05, maximum=0.5, timeout=5)


def seed(client, n: int, collection: str = "items") -> None:
    seed_items(client, n, lambda i: {"n": i, "pad": "x" * 200}, collection=collection)


@pytest.fixture
def proxy(emulator, monkeypatch):
    with FaultProxy(emulator.host, emulator.port) as proxy:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", proxy.host_port)
        yield proxy


@pytest.mark.parametrize("page_size", [None, 1000])
def test_scan_resumes_after_a_dropped_stream_without_gaps_or_duplicates(
    proxy, fs_client, project_id, page_size
) -> None:
    seed(fs_client, 3000)
    store = Store(Target(project_id, emulator_host="proxy"), policy=FAST)
    ids = []
    proxy.drop_after(200_000, "down")  # ~1/5 of the data: reset in the middle of the stream
    armed_again = False
    for doc in store.scan("items", page_size=page_size):
        ids.append(doc.id)
        if store.retries == 1 and not armed_again:  # and once more, on the resumed stream
            proxy.drop_after(200_000, "down")
            armed_again = True

    assert ids == [f"i{i:05d}" for i in range(3000)]
    # at least one stream really broke and was resumed (usually two; under heavy load the
    # second drop can miss the resumed stream)
    assert proxy.resets_done >= 1
    assert store.retries >= 1 and "ServiceUnavailable" in store.last_retry_error


def delete_all(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)


def script(plan) -> Script:
    return Script(
        revision="0001",
        down_revision=None,
        path=Path("0001_t.py"),
        doc="t",
        checksum="0" * 64,
        plan=plan,
    )


class AnswerLost(Store):
    """A real commit whose answer is lost on the way back, `times` times."""

    def __init__(self, *args, times: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.times = times
        self.sent = 0

    def commit_writes(self, writes):
        self.sent += 1
        when = super().commit_writes(writes)
        if self.times:
            self.times -= 1
            raise TransientError("commit", RuntimeError("answer lost"))
        return when


def test_ambiguous_commit_that_landed_is_recorded_not_resent(
    tmp_path, emulator, fs_client, project_id
) -> None:
    seed(fs_client, 120)
    store = AnswerLost(Target(project_id, emulator_host="set"), policy=FAST, times=1)
    state = State.open(tmp_path / "s.db")

    result = Runner(store, state, build_chain([script(delete_all)]), batch_size=50).upgrade(
        dry_run=False
    )[0]

    assert (result.committed, result.skipped) == (120, 0)
    assert store.sent == 3  # 3 batches, each sent once: the lost answer was re-read, not resent
    reasons = [r for (r,) in state.conn.execute("SELECT status FROM ops WHERE batch=1")]
    assert reasons == ["committed"] * 50
    row = state.run(result.run_id)
    assert row["retries"] == 1 and "answer lost" in row["last_retry_error"]
    assert list(fs_client.collection("items").list_documents()) == []


class NeverSent(Store):
    """A commit that fails before reaching the server, `times` times."""

    def __init__(self, *args, times: int = 2, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.times = times

    def commit_writes(self, writes):
        if self.times:
            self.times -= 1
            raise TransientError("commit", RuntimeError("connection refused"))
        return super().commit_writes(writes)


def test_ambiguous_commit_that_did_not_land_is_resent_once(
    tmp_path, emulator, fs_client, project_id
) -> None:
    seed(fs_client, 40)
    store = NeverSent(Target(project_id, emulator_host="set"), policy=FAST, times=2)
    state = State.open(tmp_path / "s.db")
    result = Runner(store, state, build_chain([script(delete_all)])).upgrade(dry_run=False)[0]
    assert result.committed == 40 and state.run(result.run_id)["retries"] == 2
    assert list(fs_client.collection("items").list_documents()) == []


def test_apply_through_resets_stalls_and_refusals_applies_each_operation_once(
    proxy, fs_client, project_id, tmp_path, monkeypatch
) -> None:
    seed(fs_client, 1500)
    monkeypatch.setenv("FSMIGRATE_PATIENCE", "60")
    monkeypatch.setenv("FSMIGRATE_RETRY_INITIAL", "0.05")
    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "3")
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(
        fsm.migrations,
        "0001",
        None,
        """
def plan(ctx):
    for doc in ctx.scan("items", page_size=300):
        yield ctx.delete(doc)
""",
    )
    faults = iter(
        [
            lambda: proxy.drop_after(2_000, "down"),
            lambda: proxy.reset_all(),
            lambda: proxy.stall(1.0),
            lambda: proxy.drop_after(500, "up"),
            lambda: proxy.drop_after(40_000, "down"),
        ]
    )

    def hook(point: str, batch: int = 0) -> None:
        if point == "before-commit":
            next(faults, lambda: None)()

    monkeypatch.setattr("fsmigrate.engine.testhooks.reached", hook)
    result = fsm("upgrade", "--batch-size", "200", "--format", "json")

    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)["migrations"][0]
    assert (run["committed"], run["skipped"], run["failed"]) == (1500, 0, 0)
    assert run["retries"] >= 1
    assert list(fs_client.collection("items").list_documents()) == []
    db = sqlite3.connect(fsm.state)
    assert db.execute("SELECT COUNT(DISTINCT path), COUNT(*) FROM ops").fetchone() == (1500, 1500)


def _committed_some(state: Path) -> bool:
    try:
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            return (
                db.execute("SELECT 1 FROM ops WHERE status='committed' LIMIT 1").fetchone()
                is not None
            )
        finally:
            db.close()
    except sqlite3.Error:
        return False


@pytest.mark.long
@pytest.mark.emulator
def test_emulator_stopped_and_restarted_during_a_run(tmp_path: Path, project_id: str) -> None:
    """The run waits out the outage with backoff; every journaled operation gets an outcome
    and none is applied twice. A restarted emulator starts empty: the documents it lost
    count as gone, and so does the lock, so the run either finishes or stops in one line
    (it cannot prove nobody took its lock) and the same command finishes it."""
    port = emu.free_port()
    first = emu.start(port=port, log_dir=tmp_path)
    env = {
        **os.environ,
        "FIRESTORE_EMULATOR_HOST": first.host_port,
        "FSMIGRATE_PATIENCE": "60",
        "FSMIGRATE_RETRY_INITIAL": "0.2",
        "FSMIGRATE_RETRY_MAX": "1",
        "FSMIGRATE_CALL_TIMEOUT": "3",
        "FSMIGRATE_TEST_PAUSE": "before-commit:0.25",
    }
    second = None
    try:
        os.environ["FIRESTORE_EMULATOR_HOST"], saved = (
            first.host_port,
            os.environ.get("FIRESTORE_EMULATOR_HOST"),
        )
        try:
            seed(firestore.Client(project=project_id), 2000)
        finally:
            if saved is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST")
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = saved
        fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
        write_script(
            fsm.migrations,
            "0001",
            None,
            """
def plan(ctx):
    for doc in ctx.scan("items", page_size=200):
        yield ctx.delete(doc)
""",
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fsmigrate",
                "--project",
                project_id,
                "--state",
                str(fsm.state),
                "--migrations",
                str(fsm.migrations),
                "upgrade",
                "--quiet",
                "--batch-size",
                "100",
                "--format",
                "json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 90  # until the first batches committed (slow under load)
        while not _committed_some(fsm.state):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run did not start committing"
            time.sleep(0.1)
        emu.stop(first.pid)
        time.sleep(1.5)
        second = emu.start(port=port, log_dir=tmp_path)
        out, err = proc.communicate(timeout=120)

        if proc.returncode != 0:
            # The restarted emulator lost the lock document too: the run cannot prove that
            # nobody took its lock over, so it stops in one line (never writes without
            # it), and the same command finishes the migration.
            assert proc.returncode == 1 and "lost the lock" in err, err
            again = subprocess.run(
                fsm.argv("upgrade", "--quiet", "--batch-size", "100", "--format", "json"),
                env={**env, "FIRESTORE_EMULATOR_HOST": second.host_port},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert again.returncode == 0, again.stderr
            out, err = again.stdout, again.stderr
            run = json.loads(out)["migrations"][0]
            assert run["status"] == "succeeded", (err, run)
        else:
            run = json.loads(out)["migrations"][0]
            assert run["status"] == "succeeded" and run["retries"] >= 1, (err, run)
        db = sqlite3.connect(fsm.state)
        assert db.execute("SELECT COUNT(*) FROM ops WHERE status='pending'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM ops WHERE status='committed'").fetchone()[0] >= 100
        per_path = db.execute(
            "SELECT MAX(n) FROM (SELECT COUNT(*) n FROM ops WHERE status='committed' GROUP BY path)"
        ).fetchone()
        assert per_path == (1,)
    finally:
        emu.stop(first.pid)
        if second is not None:
            emu.stop(second.pid)
