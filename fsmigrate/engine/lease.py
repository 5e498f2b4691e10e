"""One runner at a time per (project, database): a lease document in Firestore.

The lease lives in the target database itself (`_fsmigrate/lock`), so operators on
different machines exclude each other, not just processes on one host. It is taken with
a create (exactly one of several racing processes wins), renewed by a background thread
while the run lasts, and deleted at the end. A lease is stale when it expired (its holder
stopped renewing: killed, or cut off) or when its holder ran on this host with a PID that
is no longer alive, unless a Beam pipeline whose workers run on other machines was started
under it (`workers: elsewhere`: they may commit until it expires, whatever became of the
process that started them; such a lease is handed over, left to expire soon, rather than
deleted while they may run); a stale lease is taken over with a precondition on the stale
one, so two processes cannot both take it over.

How the lease's expiry and the run's patience relate (docs/network-failures.md): the
patience (`--patience`, 10 minutes) is how long a run keeps retrying Firestore without
progress; the lease's TTL (FSMIGRATE_LOCK_TTL, 5 minutes) is how long its lock is good
without a renewal. The lease is the stricter of the two: the run writes only while its
lease is valid. Each renewal writes `expires_at` = now + TTL; the run's writes must land
before that instant minus a margin for clock skew (`valid_until`). The lease is the
store's fence: every data commit gets a deadline no later than `valid_until` (so a commit
lands before the lock could be taken over, or not at all), and a renewal is retried only
until `valid_until`. A lease that cannot be renewed by then is lost: the run stops, with
LockLost, whatever patience it has left. So an apply rides out an outage of up to about
TTL - margin - renewal interval (4m 20s with the defaults), a dry-run (no lease) up to
its patience.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Optional

from fsmigrate import __version__
from fsmigrate.errors import FirestoreError, LockHeld, LockLost
from fsmigrate.firestore.emulator import pid_alive
from fsmigrate.firestore.patience import format_seconds
from fsmigrate.firestore.store import RESERVED_ROOT, Leases, Store
from fsmigrate.state.database import operator_name
from fsmigrate.times import rfc3339

LOCK_PATH = f"{RESERVED_ROOT}/lock"  # with the default root; see lock_path()
DEFAULT_TTL = 300.0  # seconds a lease is good without a renewal
MAX_RENEW_EVERY = 30.0  # renewed every TTL/3, at least this often
RELEASE_WITHIN = 5.0  # seconds a release keeps trying (then the lease expires by itself)


def renew_every(ttl: float) -> float:
    """Seconds between two renewals of a lease of `ttl` seconds."""
    return min(ttl / 3, MAX_RENEW_EVERY)


def margin(ttl: float) -> float:
    """Seconds before its written expiry at which a lease stops being good for writes:
    room for the clocks of two runners to differ (their expiry checks use their own)."""
    return min(ttl / 10, 10.0)


ELSEWHERE = "elsewhere"  # the lease's `workers`: a Beam run's workers on other machines


def describe(holder: dict[str, Any]) -> str:
    workers = (
        "; its Beam workers run elsewhere and may commit until it expires"
        if holder.get("workers") == ELSEWHERE
        else ""
    )
    return (
        f"{holder.get('operator', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}"
        f" ({holder.get('command', '?')}, since {_iso(holder.get('acquired_at'))}, "
        f"expires {_iso(holder.get('expires_at'))}{workers})"
    )


def _iso(value: Any) -> str:
    return rfc3339(value, "seconds") if isinstance(value, dt.datetime) else "?"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def stale_reason(holder: dict[str, Any], now: dt.datetime, host: str) -> Optional[str]:
    """Why a lease may be taken over, or None while its holder may still be working."""
    expires = holder.get("expires_at")
    if not isinstance(expires, dt.datetime) or expires < now:
        return "expired"
    if holder.get("workers") == ELSEWHERE:  # they outlive its process: only its expiry
        return None
    pid = holder.get("pid")
    if holder.get("host") == host and isinstance(pid, int) and not pid_alive(pid):
        return f"its process {pid} on this host is gone"
    return None


class Lease:
    def __init__(self, store: Store, command: str, *, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.path = lock_path(store)
        self.docs = Leases(store)
        self.ttl = ttl
        self.command = command
        self.holder_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.target = store.target.describe()
        self.update_time: Optional[dt.datetime] = None
        self.acquired_at = _now()
        self.took_over: Optional[str] = None
        self._valid_until = 0.0  # time.monotonic() after which writes must not land
        self._lost: Optional[str] = None
        self.progress: Optional[dict[str, Any]] = None  # the run's, for `fsmigrate status`
        # a Beam pipeline whose workers run on other machines may be running under it:
        # released by `hand_over`, and its process's death does not make it stale
        self.workers_elsewhere = False
        self._expires_in: Optional[float] = None  # the next body's expiry, if not the TTL
        self._stop = threading.Event()
        self._wake = threading.Event()  # renew now (a new progress to show)
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def _body(self) -> dict[str, Any]:
        body = {
            "holder": self.holder_id,
            "host": self.host,
            "pid": os.getpid(),
            "operator": operator_name(),
            "command": self.command,
            "tool_version": __version__,
            "acquired_at": self.acquired_at,
            "expires_at": _now() + dt.timedelta(seconds=self._expires_in or self.ttl),
        }
        if self.workers_elsewhere:
            body["workers"] = ELSEWHERE
        if self.progress is not None:
            body["run"] = self.progress
        return body

    def _timed_body(self, sent: list[float]) -> dict[str, Any]:
        """A body, noting when (monotonic) its expiry was computed: it is good until then
        plus the TTL, less the margin."""
        sent.append(time.monotonic())
        return self._body()

    # ---- taking and giving back ------------------------------------------------------

    def acquire(self) -> Lease:
        for _ in range(5):
            sent: list[float] = [time.monotonic()]
            created = self.docs.create(self.path, self._body())
            if created is not None:
                return self._held(created, sent[0])
            current = self.store.get(self.path)
            if current is None:
                continue  # released in between: try again
            holder = current.to_dict()
            if holder.get("holder") == self.holder_id:  # our own create, answer lost
                return self._held(current.update_time, sent[0])
            why = stale_reason(holder, _now(), self.host)
            if why is None:
                raise LockHeld(holder, self.target, describe(holder))
            sent = []
            taken = self.docs.replace(
                self.path, functools.partial(self._timed_body, sent), current.update_time
            )
            if taken is not None:
                self.took_over = f"took over a stale lock ({why}) from {describe(holder)}"
                return self._held(taken, sent[0])
        current = self.store.get(self.path)
        held = current.to_dict() if current else {}
        raise LockHeld(held, self.target, describe(held))

    def _held(self, update_time: dt.datetime, sent: float) -> Lease:
        self.update_time = update_time
        self._valid_until = sent + self.ttl - margin(self.ttl)
        self.store.fence = self.seconds_left
        self._thread = threading.Thread(
            target=self._renew_loop, name="fsmigrate-lease", daemon=True
        )
        self._thread.start()
        return self

    def start_workers_elsewhere(self) -> None:
        """A Beam pipeline whose workers run on other machines starts under this lease:
        say so in the lease now (before it is submitted). From then on the lease is not
        taken over when this process is gone, only when it expires, and its release
        is a `hand_over`, until `workers_done`."""
        before = self.update_time
        self.workers_elsewhere = True
        self.renew()
        self.check()
        if self.update_time == before:
            raise LockLost(self.target, "it could not be renewed to say so before the pipeline")

    def workers_done(self) -> None:
        """The pipeline has finished: no worker commits under this lease any more."""
        self.workers_elsewhere = False

    def release(self) -> None:
        """Stop renewing and delete the lease, if it is still ours and still good; a
        lease that cannot be deleted in time is left to expire (never an error). While
        workers elsewhere may still commit under it: `hand_over` instead."""
        if self.workers_elsewhere:
            self.hand_over()
            return
        self._last_write(
            lambda written, deadline: self.docs.delete(self.path, written, deadline=deadline)
        )

    def hand_over(self) -> None:
        """Stop renewing, and leave the lease to expire instead of deleting it: a Beam
        run's workers elsewhere may have a commit in flight (the run was interrupted, or
        failed before its pipeline finished; on Dataflow the job may run on). Each of
        their commits has a deadline no later than the call timeout and than the lease's
        expiry less the margin, and they read the lease before each batch; so the lease
        is rewritten to expire one call timeout and one margin from now, and whoever
        takes it over after that finds every commit of theirs landed or failed, and
        settles the journal by re-reading. A lease that cannot be rewritten expires at
        its own time."""
        self._expires_in = self.store.policy.timeout + margin(self.ttl)
        self._last_write(
            lambda written, deadline: self.docs.replace(
                self.path, self._body, written, deadline=deadline
            )
        )

    def _last_write(self, write: Callable[[dt.datetime, float], object]) -> None:
        """Stop renewing, then `write(update_time, deadline)` the lease one last time (its
        delete, or its hand-over), guarded by the update time it has, if it is still ours
        and still good; a lease that cannot be written in time is left to expire (never
        an error)."""
        self._stop.set()
        if self.store.fence == self.seconds_left:
            self.store.fence = None
        self._wake.set()
        if self._thread is not None:  # a renewal on the wire is abandoned at its next try
            self._thread.join(timeout=RELEASE_WITHIN)
        if not self._lock.acquire(timeout=RELEASE_WITHIN):
            return  # a renewal still hangs (a silent network): the lease expires by itself
        try:
            if self._lost is None and self.update_time is not None:
                deadline = min(self._valid_until, time.monotonic() + RELEASE_WITHIN)
                try:
                    write(self.update_time, deadline)
                except FirestoreError:
                    pass  # it expires by itself; whoever comes next takes it over
            self.update_time = None
        finally:
            self._lock.release()

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_: Any) -> None:
        self.release()

    # ---- while held ------------------------------------------------------------------

    def renew(self) -> None:
        """Renew the lease, retrying until it would expire (never longer: after that
        instant another runner may take it over); lost when that fails."""
        with self._lock:
            if self._lost is not None or self.update_time is None:
                return
            sent: list[float] = []
            try:
                # guarded by the update time we wrote: a broken or taken-over lease fails it
                renewed = self.docs.replace(
                    self.path,
                    lambda: self._timed_body(sent),
                    self.update_time,
                    deadline=self._valid_until,
                    stop=self._stop,
                )
            except FirestoreError as exc:
                if time.monotonic() >= self._valid_until:
                    self._lose(
                        f"could not renew it within its {format_seconds(self.ttl)} expiry: {exc}"
                    )
                return  # tried again at the next round, while it is still good
            if renewed is not None:
                self.update_time = renewed
                self._valid_until = sent[-1] + self.ttl - margin(self.ttl)
            elif len(sent) > 1:  # an earlier try may have landed, its answer lost
                self._adopt_own_write()
            else:
                self._lose("it was broken or taken over")

    def _adopt_own_write(self) -> None:
        """A renewal's precondition failed after a try whose answer was lost: re-read the
        lease; still ours means that try landed."""
        try:
            current = self.store.get(self.path)
        except (FirestoreError, LockLost) as exc:
            self._lose(f"could not re-read it after a renewal: {exc}")
            return
        body = current.to_dict() if current is not None else {}
        expires = body.get("expires_at")
        if body.get("holder") != self.holder_id or not isinstance(expires, dt.datetime):
            self._lose("it was broken or taken over")
            return
        self.update_time = current.update_time if current is not None else None
        left = (expires - _now()).total_seconds()
        self._valid_until = time.monotonic() + left - margin(self.ttl)

    def _lose(self, why: str) -> None:
        self._lost = why

    def publish(self, progress: dict[str, Any]) -> None:
        """Show the run's progress in the lock document (read by `fsmigrate status`): the
        renewing thread writes it at once, with the lease (never the run's own thread: a
        database that does not answer for a while holds up nothing)."""
        self.progress = progress
        self._wake.set()

    def _renew_loop(self) -> None:
        while True:
            self._wake.wait(renew_every(self.ttl))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.renew()
            except Exception as exc:  # keep trying while the lease is still good
                if time.monotonic() >= self._valid_until:
                    self._lose(f"could not renew it: {exc}")
            if self._lost is not None:
                return

    def seconds_left(self) -> float:
        """How long a write sent now may take to land before the lease could be taken
        over (the store's fence); LockLost when the lease is lost or expired."""
        if self._lost is None and time.monotonic() >= self._valid_until:
            self._lose(
                f"could not renew it within its {format_seconds(self.ttl)} expiry, so another "
                "runner could take it over"
            )
        if self._lost is not None:
            raise LockLost(self.target, self._lost)
        return self._valid_until - time.monotonic()

    def check(self) -> None:
        """Raise LockLost if the lease is no longer ours or no longer good (called before
        every batch)."""
        self.seconds_left()


def lock_path(store: Store) -> str:
    return f"{store.reserved_root}/lock"


def break_lock(store: Store) -> Optional[dict[str, Any]]:
    """Delete the lease whoever holds it; the holder it had, or None when there was none."""
    current = store.get(lock_path(store))
    if current is None:
        return None
    Leases(store).delete(lock_path(store), current.update_time)
    return current.to_dict()
