"""A run rides out a network outage (issue 25): retries bounded by time without progress
(`--patience`), not by a count; the lease stays the stricter deadline.

The outages are real: the Firestore client talks to a TCP proxy (tests/faultproxy.py) that
resets every connection and refuses new ones for the outage's length, in front of a gRPC
proxy (tests/grpcfaults.py) that records every commit the emulator applied, so a write
applied twice would show. The migration bumps a counter of each document with a
precondition on its update time: a second application could not go unnoticed either.

The one test with a real minute-long outage (twice: in a scan, then in the commits) is
marked `real_outage`; FSMIGRATE_TEST_OUTAGE (seconds) shortens it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from google.cloud import firestore

from faultproxy import FaultProxy
from fsmigrate.firestore.patience import Patience, format_seconds
from grpcfaults import GrpcFaultProxy
from helpers import Fsm, write_script

OUTAGE = float(os.environ.get("FSMIGRATE_TEST_OUTAGE", "60"))
N = 1200

BUMP = """
from fsmigrate.engine import testhooks

def plan(ctx):
    for i, doc in enumerate(ctx.scan("items", page_size=200)):
        if i == 300:
            testhooks.reached("mid-scan")  # the next page is read during the outage
        yield ctx.update(doc, {"visits": doc.get("visits") + 1})
"""


class Outage:
    """Cuts the network between fsmigrate and Firestore: every connection reset, new ones
    refused, for `seconds`; then it heals."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.started: list[float] = []
        self.ended: list[float] = []
        self.timers: list[threading.Timer] = []

    def start(self, seconds: float) -> None:
        self.proxy.refuse(True)
        self.proxy.reset_all()
        self.started.append(time.monotonic())
        timer = threading.Timer(seconds, self.end)
        timer.daemon = True
        self.timers.append(timer)
        timer.start()

    def end(self) -> None:
        self.proxy.refuse(False)
        self.ended.append(time.monotonic())

    def cancel(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.proxy.refuse(False)


@pytest.fixture
def net(emulator, monkeypatch):
    """(outage, grpc proxy): the client -> TCP proxy -> gRPC proxy -> emulator."""
    with GrpcFaultProxy(emulator.host, emulator.port) as grpc_proxy:
        host, port = grpc_proxy.host_port.rsplit(":", 1)
        with FaultProxy(host, int(port)) as tcp:
            monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", tcp.host_port)
            outage = Outage(tcp)
            try:
                yield outage, grpc_proxy
            finally:
                outage.cancel()


@pytest.fixture
def fsm(tmp_path: Path, project_id: str, fs_client, monkeypatch) -> Fsm:
    for start in range(0, N, 500):
        batch = fs_client.batch()
        for i in range(start, min(N, start + 500)):
            batch.set(fs_client.document(f"items/i{i:05d}"), {"n": i, "visits": 0})
        batch.commit()
    monkeypatch.setenv("FSMIGRATE_RETRY_INITIAL", "0.2")
    monkeypatch.setenv("FSMIGRATE_CALL_TIMEOUT", "10")
    fsm = Fsm(project_id, tmp_path / "state.db", tmp_path / "migrations")
    write_script(fsm.migrations, "0001", None, BUMP)
    return fsm


def hooks(monkeypatch, **at: object) -> None:
    """Run `at[point]` (a callable) when the run reaches that test point: "mid_scan", or
    "commit_<n>" before the commit of batch n."""

    def reached(point: str, batch: int = 0) -> None:
        name = point.replace("-", "_") if point == "mid-scan" else f"commit_{batch}"
        if point in ("mid-scan", "before-commit") and name in at:
            at.pop(name)()

    monkeypatch.setattr("fsmigrate.engine.testhooks.reached", reached)


def item_commits(grpc_proxy: GrpcFaultProxy, since: int = 0) -> Counter:
    return Counter(
        n.rsplit("/", 1)[1] for n in grpc_proxy.committed_names[since:] if "/items/" in n
    )


def assert_each_applied_once(
    fs_client, grpc_proxy: GrpcFaultProxy, state: Path, since: int
) -> None:
    visits = Counter(s.get("visits") for s in fs_client.collection("items").stream())
    assert visits == {1: N}  # every document bumped, none twice
    applied = item_commits(grpc_proxy, since)
    assert len(applied) == N and set(applied.values()) == {1}  # each write landed once
    db = sqlite3.connect(state)
    rows = db.execute(
        "SELECT status, COUNT(*), COUNT(DISTINCT path) FROM ops GROUP BY status"
    ).fetchall()
    db.close()
    # the journal: every operation committed exactly once over all runs (a resumed run
    # marks the ones it redid `failed` in the run that was interrupted)
    committed = {status: (n, distinct) for status, n, distinct in rows}["committed"]
    assert committed == (N, N)
    assert not [r for r in rows if r[0] in ("pending", "skipped")]


# ---- the budget itself (pure logic) ----------------------------------------------------


def test_the_budget_starts_over_with_progress_and_counts_a_failing_stretch_once() -> None:
    patience = Patience(0.6, initial=0.01, maximum=0.05)
    seen = []
    patience.listener = seen.append
    error = ConnectionResetError("reset")
    for attempt in range(5):  # 5 failures in a row, well within the budget
        patience.wait("scan of items", attempt, error)
    patience.progressed()  # a read returned: the budget starts over
    assert seen[-1] is None and seen[0].code == "ConnectionResetError"
    assert "waiting for Firestore: ConnectionResetError, retrying for up to" in seen[0].message()
    stretch = patience.waited
    assert 0 < stretch < 0.6
    started = time.monotonic()
    with pytest.raises(Exception, match=r"gave up after \d+s without progress, --patience 1s"):
        attempt = 0
        while True:  # fails until the budget is spent, counted from the new stretch
            patience.wait("commit of 5 operations", attempt, error)
            attempt += 1
    assert time.monotonic() - started >= 0.6
    assert patience.retries >= 7
    assert patience.waited >= stretch + 0.6


def test_durations_for_people() -> None:
    assert [format_seconds(s) for s in (0, 45, 60, 552, 3600, 3900)] == [
        "0s",
        "45s",
        "1m",
        "9m 12s",
        "1h",
        "1h 5m",
    ]


def test_a_bad_patience_is_refused_with_exit_2(fsm: Fsm) -> None:
    for bad in ("soon", "0", "-5", "10x"):
        result = fsm("--patience", bad, "upgrade", "--dry-run")
        assert result.exit_code == 2, result.output
        assert "--patience" in result.stderr


# ---- outages against the emulator ------------------------------------------------------


@pytest.mark.long
@pytest.mark.real_outage
def test_a_minute_long_outage_in_a_scan_and_again_in_the_commits_is_ridden_out(
    net, fsm: Fsm, fs_client, monkeypatch
) -> None:
    """The default patience (10 minutes) and lease (5 minutes): one command finishes."""
    outage, grpc_proxy = net
    seeded = len(grpc_proxy.committed_names)  # the seeding went through the proxies too
    hooks(
        monkeypatch,
        mid_scan=lambda: outage.start(OUTAGE),
        commit_9=lambda: outage.start(OUTAGE),
    )
    result = fsm("upgrade", "--quiet", "--batch-size", "100", "--format", "json")

    assert result.exit_code == 0, result.output
    assert len(outage.ended) == 2  # both outages happened, and ended, during the run
    assert "waiting for Firestore: UNAVAILABLE, retrying for up to" in result.stderr
    assert "Firestore answers again" in result.stderr
    run = fsm.json("history")["runs"][0]
    assert run["status"] == "succeeded" and run["committed"] == N
    assert run["retries"] >= 2
    assert run["actual"]["waited_seconds"] >= 2 * OUTAGE * 0.9
    assert any(note.startswith("waited ") for note in run["notes"])
    assert_each_applied_once(fs_client, grpc_proxy, fsm.state, seeded)


@pytest.mark.long
def test_an_outage_longer_than_the_patience_stops_in_one_line_and_the_next_command_finishes(
    net, fsm: Fsm, fs_client, monkeypatch
) -> None:
    outage, grpc_proxy = net
    seeded = len(grpc_proxy.committed_names)  # the seeding went through the proxies too
    monkeypatch.setenv("FSMIGRATE_LOCK_TTL", "10")
    hooks(monkeypatch, commit_5=lambda: outage.start(8))
    stopped = fsm("--patience", "3s", "upgrade", "--quiet", "--batch-size", "100")

    assert stopped.exit_code == 1, stopped.output
    lines = stopped.stderr.strip().splitlines()
    failed = [line for line in lines if line.startswith("FAILED:")]
    assert len(failed) == 1 and failed[0] == lines[-1], stopped.stderr
    assert "without progress, --patience 3s" in failed[0] and "ServiceUnavailable" in failed[0]
    assert "waiting for Firestore: UNAVAILABLE" in stopped.stderr
    first = fsm.json("history")["runs"][0]
    assert first["status"] == "failed" and 0 < first["committed"] < N
    assert first["retries"] >= 1

    while not outage.ended:  # the network heals; the same command again
        time.sleep(0.2)
    lock = fs_client.document("_fsmigrate/lock").get()  # released, or left to expire: the
    if lock.exists:  # failed run was this process (alive), so it is not taken over at once
        time.sleep(max(0.0, lock.get("expires_at").timestamp() - time.time()) + 0.5)
    finished = fsm("upgrade", "--quiet", "--batch-size", "100")
    assert finished.exit_code == 0, finished.output
    assert fsm.json("history")["runs"][0]["resumes"] == first["run_id"]
    assert_each_applied_once(fs_client, grpc_proxy, fsm.state, seeded)


def test_a_lease_that_would_expire_during_the_outage_stops_the_run_without_writing(
    net, fsm: Fsm, fs_client, monkeypatch, emulator, project_id
) -> None:
    """Patience to spare (60 s), a lease of 3 s: the lease cannot be renewed in the outage,
    another runner takes the lock over once it expired, and the network heals before the
    patience would run out; the run stops, and none of its writes lands after the
    takeover."""
    outage, grpc_proxy = net
    monkeypatch.setenv("FSMIGRATE_LOCK_TTL", "3")
    with monkeypatch.context() as env:  # the other runner is not behind the broken network
        env.setenv("FIRESTORE_EMULATOR_HOST", emulator.host_port)
        lock = firestore.Client(project=project_id).document("_fsmigrate/lock")
    takeover: dict[str, int] = {}

    def take_over_when_expired() -> None:
        while True:
            body = lock.get().to_dict() or {}
            if body.get("expires_at") and body["expires_at"].timestamp() < time.time():
                break
            time.sleep(0.1)
        takeover["at"] = len(grpc_proxy.committed_names)
        lock.set(
            {"holder": "someone", "host": "elsewhere", "pid": 1, "expires_at": body["expires_at"]}
        )
        outage.end()  # heal now: the run could write again, if it did not know better

    taker = threading.Thread(target=take_over_when_expired, daemon=True)

    def cut() -> None:
        outage.start(60)
        taker.start()

    hooks(monkeypatch, commit_4=cut)
    result = fsm("--patience", "60s", "upgrade", "--quiet", "--batch-size", "100")

    assert result.exit_code == 1, result.output
    taker.join(timeout=30)  # the lock expires, is taken over, and the network heals
    time.sleep(1.0)  # a write that had been held back would land now
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("FAILED: lost the lock") and "could not renew it within its 3s" in line
    assert "at" in takeover, "the lock was never taken over"
    assert item_commits(grpc_proxy, takeover["at"]) == Counter()  # nothing written after
    assert lock.get().get("holder") == "someone"  # and the run did not release it
    run = fsm.json("history")["runs"][0]
    assert run["status"] == "failed" and run["committed"] < N


BEAM_BUMP = """
from fsmigrate.distributed import scan

source = scan("items")

def each(ctx, doc):
    yield ctx.update(doc, {"visits": doc.get("visits") + 1})
"""


@pytest.mark.long
def test_beam_workers_and_their_coordinator_ride_out_an_outage(
    net, fsm: Fsm, fs_client, monkeypatch, tmp_path: Path
) -> None:
    """The workers (other processes, behind the same broken network) wait with the run's
    patience and count their retries and waits into the run's record."""
    pytest.importorskip("apache_beam", reason="the beam extra is not installed")
    from fsmigrate import api

    outage, grpc_proxy = net
    seeded = len(grpc_proxy.committed_names)
    write_script(tmp_path / "beam_migrations", "0001", None, BEAM_BUMP)
    cfg = api.Config(project=fsm.project, state=fsm.state, migrations=tmp_path / "beam_migrations")
    monkeypatch.setenv("FSMIGRATE_TEST_PAUSE", "before-commit:0.2")  # in the workers

    def cut_after_some_commits() -> None:
        while len(item_commits(grpc_proxy, seeded)) < 200:
            time.sleep(0.05)
        outage.start(8)

    watcher = threading.Thread(target=cut_after_some_commits, daemon=True)
    watcher.start()
    run = api.upgrade(cfg, api.RunOptions(runner="beam", workers=2, batch_size=100)).runs[0]

    assert outage.ended, "the outage did not happen during the run"
    assert (run.status, run.committed, run.skipped) == ("succeeded", N, 0)
    assert run.retries >= 1 and run.actual is not None and run.actual["waited_seconds"] > 0
    assert_each_applied_once(fs_client, grpc_proxy, fsm.state, seeded)


def test_a_beam_worker_writes_only_while_the_coordinators_lease_is_good(
    emulator, project_id: str, fs_client
) -> None:
    """The worker's fence: the seconds left before the lease's expiry less the margin (the
    deadline of its commits); the lock document read again once that passed; LockLost when
    it expired, was taken over, or is gone."""
    pytest.importorskip("apache_beam", reason="the beam extra is not installed")
    import datetime as dt

    from fsmigrate.beam.pipeline import _LeaseFence
    from fsmigrate.engine.lease import LockLost
    from fsmigrate.firestore.store import Store, Target

    store = Store(Target(project_id, emulator_host="set"))
    lock = fs_client.document("_fsmigrate/lock")
    now = dt.datetime.now(dt.timezone.utc)
    lock.set({"holder": "coordinator", "expires_at": now + dt.timedelta(seconds=30)})
    fence = _LeaseFence(store, "_fsmigrate/lock", "coordinator", ttl=60)  # margin 6 s

    left = fence.refresh()
    assert 0 < left <= 24 and 0 < fence() <= left  # a commit's deadline: within the lease
    store.fence = fence
    fence.valid_until = 0.0  # its expiry passed: read again (once), renewed meanwhile
    lock.set({"holder": "coordinator", "expires_at": now + dt.timedelta(seconds=60)})
    assert 24 < fence() <= 54  # the new expiry (the old one leaves at most 24 s)
    for body in (
        {"holder": "coordinator", "expires_at": now - dt.timedelta(seconds=1)},  # expired
        {"holder": "someone", "expires_at": now + dt.timedelta(seconds=60)},  # taken over
        None,  # broken
    ):
        if body is None:
            lock.delete()
        else:
            lock.set(body)
        fence.valid_until = 0.0
        with pytest.raises(LockLost, match="the coordinator's lease is gone"):
            store.commit_writes([])  # refused before anything is sent


def test_a_renewal_whose_answer_was_lost_is_recognised_by_re_reading_the_lease(
    emulator, project_id: str, fs_client
) -> None:
    """The renewal landed but its answer was lost: the next try meets its own write as a
    failed precondition; the lease is re-read, found to be still ours, and kept (not
    declared lost, not renewed blindly)."""
    from fsmigrate.engine.lease import Lease
    from fsmigrate.errors import TransientError
    from fsmigrate.firestore.store import Store, Target

    class AnswerLost(Store):
        lose_next = False

        def commit_writes(self, writes, *, lease=None):
            when = super().commit_writes(writes, lease=lease)
            if lease is not None and self.lose_next:
                self.lose_next = False
                raise TransientError("write of the lock", ConnectionResetError("answer lost"))
            return when

    store = AnswerLost(Target(project_id, emulator_host="set"))
    lease = Lease(store, "test", ttl=60).acquire()
    try:
        before = lease.update_time
        store.lose_next = True
        lease.renew()
        lease.check()  # still ours
        current = fs_client.document("_fsmigrate/lock").get()
        assert lease.update_time == current.update_time and lease.update_time != before
        assert current.get("holder") == lease.holder_id
        lease.renew()  # and the next renewal goes on from the adopted update time
        lease.check()
    finally:
        lease.release()
    assert not fs_client.document("_fsmigrate/lock").get().exists
