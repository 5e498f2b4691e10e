"""How long a run keeps retrying Firestore: a budget of time without progress, not a count.

Every transient failure (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, RESOURCE_EXHAUSTED,
INTERNAL, a reset stream, a refused connection) is retried after a capped, jittered
exponential backoff for as long as the run's patience lasts. A read (every idempotent
call: scans, batch reads, counts, listings of collections and documents, partitioning)
also retries UNKNOWN, the status of an answer lost on the way: it can be asked again
(`store.READ_RETRIED`). A commit is never sent again blindly: a commit's UNKNOWN stops the
run with its batch journaled, and the next command settles it by re-reading its
documents, as after a crash. The patience is counted from the moment
the store stopped making progress: the first failure after the last read that returned
or the last commit that landed. Progress anywhere (any thread) starts the budget over, so
a run that keeps moving, however slowly, never runs out of it; a run that makes none for
`patience` seconds stops with `TransientError`, naming the error and how long it waited.

One `Patience` belongs to one `Store` and is shared by all its threads (commit threads,
the parts of a partitioned scan). It counts the retries and the time spent failing (a
failing stretch counts once, however many threads wait in it), and tells its listener
what it is waiting for: the core never prints; the CLI shows it on the progress bar.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from fsmigrate.errors import TransientError

DEFAULT_PATIENCE = 600.0  # seconds without progress before a run gives up (10 minutes)


def format_seconds(seconds: float) -> str:
    """'45s', '9m 12s', '1h 5m' (whole seconds; for people)."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def error_code(exc: BaseException) -> str:
    """The gRPC status name of an error (UNAVAILABLE...), else its type's name."""
    code = getattr(getattr(exc, "grpc_status_code", None), "name", None)
    return code or type(exc).__name__


@dataclass(frozen=True)
class Waiting:
    """What a run is waiting for, told to the listener before each retry."""

    what: str  # the call that failed ("scan of items", "commit of 200 operations")
    code: str  # UNAVAILABLE, DEADLINE_EXCEEDED, ... (or the error's type)
    waited: float  # seconds since the store last made progress
    left: float  # seconds of patience left

    def message(self) -> str:
        return (
            f"waiting for Firestore: {self.code}, retrying for up to "
            f"{format_seconds(self.left)} more"
        )


Listener = Callable[[Optional[Waiting]], None]  # None: progress again, the wait is over


class Patience:
    """The retry budget of one store (see the module's docstring). Thread-safe."""

    def __init__(
        self,
        seconds: float = DEFAULT_PATIENCE,
        *,
        initial: float = 0.25,
        maximum: float = 10.0,
        multiplier: float = 2.0,
    ) -> None:
        self.seconds = seconds
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.listener: Optional[Listener] = None
        self.retries = 0
        self.last_error: Optional[str] = None
        self._lock = threading.Lock()
        self._failing_since: Optional[float] = None  # start of the current failing stretch
        self._waited = 0.0  # seconds of failing stretches that ended

    # ---- what callers report ------------------------------------------------------------

    def progressed(self) -> None:
        """A read returned or a commit landed: the budget starts over."""
        if self._failing_since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._failing_since is None:
                return
            self._waited += time.monotonic() - self._failing_since
            self._failing_since = None
        if self.listener is not None:
            self.listener(None)

    def delay(self, attempt: int) -> float:
        """Wait before retry number `attempt` (0-based) of one call: exponential up to
        `maximum`, jittered over half..all of it."""
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(attempt, 60))
        return ceiling * random.uniform(0.5, 1.0)

    def wait(
        self,
        what: str,
        attempt: int,
        exc: BaseException,
        *,
        check: Optional[Callable[[], object]] = None,
    ) -> None:
        """After a transient failure of `what` (its `attempt`-th in a row): sleep before
        the next try, or raise TransientError when the patience is spent. `check` is
        called before sleeping and may raise to stop at once (a lost lease)."""
        now = time.monotonic()
        with self._lock:
            self.retries += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self._failing_since is None:
                self._failing_since = now
            waited = now - self._failing_since
        left = self.seconds - waited
        if left <= 0:
            raise TransientError(
                f"{what} (gave up after {format_seconds(waited)} without progress, "
                f"--patience {format_seconds(self.seconds)})",
                exc,
            ) from exc
        if check is not None:
            check()
        if self.listener is not None:
            self.listener(Waiting(what, error_code(exc), waited, left))
        time.sleep(min(self.delay(attempt), left))

    # ---- what a run records -------------------------------------------------------------

    @property
    def waited(self) -> float:
        """Seconds spent failing so far (the current stretch included)."""
        with self._lock:
            ongoing = 0.0
            if self._failing_since is not None:
                ongoing = time.monotonic() - self._failing_since
            return self._waited + ongoing
