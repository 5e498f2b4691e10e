"""One runner at a time per (project, database): a lease document in Firestore.

The lease lives in the target database itself (`_fsmigrate/lock`), so operators on
different machines exclude each other, not just processes on one host. It is taken with
a create (exactly one of several racing processes wins), renewed by a background thread
while the run lasts, and deleted at the end. A lease is stale when it expired (its holder
stopped renewing: killed, or cut off) or when its holder ran on this host with a PID that
is no longer alive; a stale lease is taken over with a precondition on the stale one, so
two processes cannot both take it over.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from typing import Any, Optional

from fsmigrate import __version__
from fsmigrate.errors import LockHeld, LockLost
from fsmigrate.firestore.emulator import pid_alive
from fsmigrate.firestore.store import RESERVED_ROOT, Leases, Store
from fsmigrate.state.database import operator_name
from fsmigrate.times import rfc3339

LOCK_PATH = f"{RESERVED_ROOT}/lock"  # with the default root; see lock_path()
DEFAULT_TTL = 60.0


def describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('operator', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}"
        f" ({holder.get('command', '?')}, since {_iso(holder.get('acquired_at'))}, "
        f"expires {_iso(holder.get('expires_at'))})"
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
        self._lost: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def _body(self) -> dict[str, Any]:
        return {
            "holder": self.holder_id,
            "host": self.host,
            "pid": os.getpid(),
            "operator": operator_name(),
            "command": self.command,
            "tool_version": __version__,
            "acquired_at": self.acquired_at,
            "expires_at": _now() + dt.timedelta(seconds=self.ttl),
        }

    # ---- taking and giving back ------------------------------------------------------

    def acquire(self) -> Lease:
        for _ in range(5):
            created = self.docs.create(self.path, self._body())
            if created is not None:
                return self._held(created)
            current = self.store.get(self.path)
            if current is None:
                continue  # released in between: try again
            holder = current.to_dict()
            if holder.get("holder") == self.holder_id:  # our own create, answer lost
                return self._held(current.update_time)
            why = stale_reason(holder, _now(), self.host)
            if why is None:
                raise LockHeld(holder, self.target, describe(holder))
            taken = self.docs.replace(self.path, self._body(), current.update_time)
            if taken is not None:
                self.took_over = f"took over a stale lock ({why}) from {describe(holder)}"
                return self._held(taken)
        current = self.store.get(self.path)
        held = current.to_dict() if current else {}
        raise LockHeld(held, self.target, describe(held))

    def _held(self, update_time: dt.datetime) -> Lease:
        self.update_time = update_time
        self._thread = threading.Thread(
            target=self._renew_loop, name="fsmigrate-lease", daemon=True
        )
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
        with self._lock:
            if self._lost is None and self.update_time is not None:
                self.docs.delete(self.path, self.update_time)
            self.update_time = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_: Any) -> None:
        self.release()

    # ---- while held ------------------------------------------------------------------

    def renew(self) -> None:
        with self._lock:
            if self._lost is not None or self.update_time is None:
                return
            # guarded by the update time we wrote: a broken or taken-over lease fails it
            renewed = self.docs.replace(self.path, self._body(), self.update_time)
            if renewed is None:
                self._lost = "it was broken or taken over"
            else:
                self.update_time = renewed

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except Exception as exc:  # keep trying until the lease would expire
                if self.update_time is not None and self._expired_locally():
                    self._lost = f"could not renew it: {exc}"
                    return

    def _expired_locally(self) -> bool:
        assert self.update_time is not None
        return _now() - self.update_time > dt.timedelta(seconds=self.ttl)

    def check(self) -> None:
        """Raise LockLost if the lease is no longer ours (called before every commit)."""
        if self._lost is not None:
            raise LockLost(self.target, self._lost)


def lock_path(store: Store) -> str:
    return f"{store.reserved_root}/lock"


def break_lock(store: Store) -> Optional[dict[str, Any]]:
    """Delete the lease whoever holds it; the holder it had, or None when there was none."""
    current = store.get(lock_path(store))
    if current is None:
        return None
    Leases(store).delete(lock_path(store), current.update_time)
    return current.to_dict()
