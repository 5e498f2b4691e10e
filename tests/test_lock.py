"""One runner at a time: the lease document in Firestore, against the real emulator."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time

import pytest

from fsmigrate.engine.lease import LOCK_PATH, Lease, LockHeld
from fsmigrate.firestore.store import Store, Target
from helpers import Fsm, seed_items, write_script

DELETE_ALL = """
def plan(ctx):
    for doc in ctx.scan("items"):
        yield ctx.delete(doc)
"""


def seed(client, n: int) -> None:
    seed_items(client, n, width=4)


def cli(fsm: Fsm, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        fsm.argv(*args),
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def fsm(fsm: Fsm) -> Fsm:
    write_script(fsm.migrations, "0001", None, DELETE_ALL)
    return fsm


@pytest.fixture
def store(project_id: str, emulator) -> Store:
    return Store(Target(project_id, emulator_host="set"))


def test_eight_runners_at_once_exactly_one_applies(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 300)
    procs = [cli(fsm, "upgrade", "--quiet", FSMIGRATE_TEST_PAUSE="after-lock:4") for _ in range(8)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]

    codes = sorted(code for code, _, _ in results)
    assert codes == [0] + [3] * 7, results
    for code, _, err in results:
        if code == 3:
            line = err.strip()
            assert "\n" not in line and line.startswith("FAILED: another fsmigrate holds the lock")
            assert "fsmigrate break-lock" in line and "pid " in line
    history = fsm.json("history")["runs"]
    assert [(r["mode"], r["status"], r["committed"]) for r in history] == [
        ("apply", "succeeded", 300)
    ]
    assert list(fs_client.collection("items").list_documents()) == []
    assert fs_client.document(LOCK_PATH).get().exists is False  # released

    again = fsm("upgrade")
    assert again.exit_code == 0 and "up to date" in again.stdout
    assert len(fsm.json("history")["runs"]) == 1


def plant(fs_client, **holder) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    body = {
        "holder": "someone",
        "host": "elsewhere",
        "pid": 4242,
        "operator": "alice",
        "command": "upgrade",
        "acquired_at": now,
        "expires_at": now + dt.timedelta(minutes=10),
    }
    body.update(holder)
    fs_client.document(LOCK_PATH).set(body)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_live_lease_of_another_host_refuses_with_exit_3(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3)
    plant(fs_client)
    result = fsm("upgrade")
    assert result.exit_code == 3
    assert "alice@elsewhere pid 4242 (upgrade" in result.stderr
    assert len(list(fs_client.collection("items").list_documents())) == 3
    assert fsm("upgrade", "--dry-run").exit_code == 0  # a dry-run needs no lock


def test_expired_lease_is_taken_over(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3)
    plant(fs_client, expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    result = fsm("upgrade")
    assert result.exit_code == 0, result.output
    assert "took over a stale lock (expired)" in result.stderr
    assert list(fs_client.collection("items").list_documents()) == []


def test_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3)
    pid = dead_pid()
    plant(fs_client, host=socket.gethostname(), pid=pid)
    result = fsm("upgrade")
    assert result.exit_code == 0, result.output
    assert f"its process {pid} on this host is gone" in result.stderr


def test_lease_of_a_live_process_on_this_host_is_respected(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 3)
    plant(fs_client, host=socket.gethostname(), pid=os.getpid())
    assert fsm("upgrade").exit_code == 3


def test_a_lease_with_workers_elsewhere_outlives_its_dead_process(fsm: Fsm, fs_client) -> None:
    """A Beam run's workers on other machines may commit until the lease expires, whatever
    became of the process that started them: its death on this host is no reason to take
    the lease over (the refusal says why); its expiry is."""
    seed(fs_client, 3)
    pid = dead_pid()
    plant(fs_client, host=socket.gethostname(), pid=pid, workers="elsewhere")
    result = fsm("upgrade")
    assert result.exit_code == 3
    assert "its Beam workers run elsewhere and may commit until it expires" in result.stderr
    assert len(list(fs_client.collection("items").list_documents())) == 3

    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    plant(fs_client, host=socket.gethostname(), pid=pid, workers="elsewhere", expires_at=past)
    result = fsm("upgrade")
    assert result.exit_code == 0 and "took over a stale lock (expired)" in result.stderr


def test_a_lease_with_workers_elsewhere_is_handed_over_not_deleted(
    project_id: str, emulator, fs_client
) -> None:
    """Released while a pipeline's workers elsewhere may still commit (the run was
    interrupted or failed), the lease is left to expire one call timeout and one margin
    from then: long enough for any commit in flight to have landed or failed, and no
    longer. Once the pipeline has finished, it is deleted as usual."""
    from fsmigrate.firestore.store import RetryPolicy

    store = Store(Target(project_id, emulator_host="set"), policy=RetryPolicy(timeout=2.0))
    lease = Lease(store, "test", ttl=10).acquire()
    lease.start_workers_elsewhere()
    assert fs_client.document(LOCK_PATH).get().get("workers") == "elsewhere"
    lease.release()
    handed = dt.datetime.now(dt.timezone.utc)
    body = fs_client.document(LOCK_PATH).get().to_dict()
    assert body["holder"] == lease.holder_id and body["workers"] == "elsewhere"
    left = (body["expires_at"] - handed).total_seconds()
    assert 2.0 < left <= 3.0  # the call timeout, 2 s, and the margin, 1 s (TTL 10 s / 10)
    with pytest.raises(LockHeld, match="Beam workers run elsewhere"):
        Lease(store, "other", ttl=10).acquire()

    lease = Lease(store, "after", ttl=10)
    time.sleep(max(0.0, left + 0.2))
    lease.acquire()
    assert lease.took_over is not None and "(expired)" in lease.took_over
    lease.start_workers_elsewhere()
    lease.workers_done()
    lease.release()
    assert not fs_client.document(LOCK_PATH).get().exists


def test_break_lock_removes_it_with_a_warning(fsm: Fsm, fs_client) -> None:
    plant(fs_client)
    result = fsm("break-lock")
    assert result.exit_code == 0
    assert "WARNING: broke the lock held by alice@elsewhere pid 4242" in result.stderr
    assert not fs_client.document(LOCK_PATH).get().exists
    assert fsm("break-lock").stdout.strip() == "no lock is held"


def test_lease_is_renewed_while_held_and_released(store: Store, fs_client) -> None:
    lease = Lease(store, "test", ttl=1.5).acquire()
    try:
        first = fs_client.document(LOCK_PATH).get().get("expires_at")
        time.sleep(1.2)
        second = fs_client.document(LOCK_PATH).get().get("expires_at")
        assert second > first
        with pytest.raises(LockHeld):
            Lease(store, "other", ttl=1.5).acquire()
        lease.check()
    finally:
        lease.release()
    assert not fs_client.document(LOCK_PATH).get().exists


def test_a_broken_lease_stops_the_run_before_its_next_commit(fsm: Fsm, fs_client) -> None:
    seed(fs_client, 20)
    proc = cli(
        fsm, "upgrade", "--quiet", FSMIGRATE_TEST_PAUSE="after-lock:3", FSMIGRATE_LOCK_TTL="1.5"
    )
    deadline = time.time() + 20
    while not fs_client.document(LOCK_PATH).get().exists:
        assert time.time() < deadline
        time.sleep(0.05)
    assert fsm("break-lock").exit_code == 0
    plant(fs_client)  # someone else takes it
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert code == 1 and "lost the lock" in err, err
    assert len(list(fs_client.collection("items").list_documents())) == 20
    assert fs_client.document(LOCK_PATH).get().get("holder") == "someone"  # not released by it
    run = fsm.json("history")["runs"][0]
    assert run["status"] == "failed" and run["committed"] == 0
