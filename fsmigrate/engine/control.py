"""Live control of a running apply, from another shell or machine, through the target.

The operator's side (`send`, for `fsmigrate control pause|resume|rate N|stop`) writes
the control document beside the lock (`_fsmigrate/control` with the default markers
collection): it names the lease holder it is meant for (a later run never obeys the
controls of an earlier one) and keeps the events in order, each with who sent it and
when. Every write is guarded by the document's update time, so two operators sending at
once both get through, in some order.

The run's side reads the document at batch boundaries, at most every `interval` seconds
(`Reader`): the local runner before it journals a batch (`Controller`, which also
records the events in the state file, applies a new rate to the limiter, holds the run
while it is paused, stops it cleanly, publishes its progress in the lock document for
`fsmigrate status`, and watches the skip budget), and every Beam worker before it
journals a batch. A paused run keeps its lease (renewed as usual) and commits nothing; a
stopped run lets its batches in flight settle, is recorded as `stopped`, releases the
lock, and the next run goes on from there.

`SkipBudget` is --max-skip-ratio: a run whose skipped (or failed) operations pass the
ratio over the last `window` operations settled stops itself, as with `control stop`,
with the reason sent as a control event (so the Beam workers stop too).
"""

from __future__ import annotations

import datetime as dt
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from fsmigrate.engine.lease import lock_path
from fsmigrate.errors import FirestoreError, NothingToControl, RunStopped, UsageError
from fsmigrate.firestore.store import Leases, Store
from fsmigrate.state.database import operator_name
from fsmigrate.times import rfc3339, seconds_from_env

if TYPE_CHECKING:  # types only
    from fsmigrate.engine.run import Run

PAUSE = "pause"
RESUME = "resume"
RATE = "rate"
STOP = "stop"
ACTIONS = (PAUSE, RESUME, RATE, STOP)
DEFAULT_INTERVAL = 2.0  # seconds between two reads of the control document
INTERVAL_ENV = "FSMIGRATE_CONTROL_INTERVAL"
PUBLISH_EVERY = 5.0  # seconds between two progress updates in the lock document
KEEP_EVENTS = 200  # the newest events the control document keeps
DEFAULT_WINDOW = 1000  # operations over which --max-skip-ratio is judged
MIN_JUDGED = 100  # ... once at least this many have settled
BUDGET_OPERATOR = "fsmigrate (--max-skip-ratio)"


def control_path(store: Store) -> str:
    return f"{store.reserved_root}/control"


def interval_from_env(environ: Optional[dict[str, str]] = None) -> float:
    return seconds_from_env(INTERVAL_ENV, DEFAULT_INTERVAL, environ)


@dataclass(frozen=True)
class Event:
    """One control event as sent: `value` is the rate of `rate`, the reason of `stop`."""

    seq: int
    action: str
    value: Optional[str]
    operator: str
    host: str
    sent_at: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Event:
        return cls(
            seq=int(obj["seq"]),
            action=str(obj["action"]),
            value=None if obj.get("value") is None else str(obj["value"]),
            operator=str(obj.get("operator") or "?"),
            host=str(obj.get("host") or "?"),
            sent_at=str(obj.get("sent_at") or "?"),
        )

    def describe(self) -> str:
        what = {
            PAUSE: "paused",
            RESUME: "resumed",
            RATE: f"rate set to {self.value} ops/s",
            STOP: f"stopped ({self.value})" if self.value else "stopped",
        }.get(self.action, self.action)
        return f"{what} by {self.operator}@{self.host} at {self.sent_at}"


@dataclass
class Controls:
    """What the control document asks of the run now, and its events."""

    holder: Optional[str] = None
    paused: bool = False
    rate: Optional[float] = None
    stop: Optional[str] = None  # the reason, once stopped
    events: list[Event] = field(default_factory=list)

    @classmethod
    def from_doc(cls, body: dict[str, Any]) -> Controls:
        return cls(
            holder=body.get("holder"),
            paused=bool(body.get("paused")),
            rate=body.get("rate"),
            stop=body.get("stop"),
            events=[Event.from_json(e) for e in body.get("events") or ()],
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "holder": self.holder,
            "paused": self.paused,
            "rate": self.rate,
            "stop": self.stop,
            "events": [e.to_json() for e in self.events[-KEEP_EVENTS:]],
            "updated_at": dt.datetime.now(dt.timezone.utc),
        }

    def apply(self, event: Event) -> None:
        if event.action == PAUSE:
            self.paused = True
        elif event.action == RESUME:
            self.paused = False
        elif event.action == RATE:
            self.rate = float(event.value) if event.value is not None else None
        elif event.action == STOP:
            self.stop = event.value or "stopped"
        self.events.append(event)


def read(store: Store, holder: Optional[str]) -> Controls:
    """The controls meant for lease `holder` (none when the document is for another)."""
    doc = store.get(control_path(store))
    if doc is None:
        return Controls(holder=holder)
    found = Controls.from_doc(doc.to_dict())
    return found if found.holder == holder else Controls(holder=holder)


def check_action(action: str, value: Optional[str]) -> Optional[str]:
    """The event's value, checked: a rate is a positive number of operations per second."""
    if action not in ACTIONS:
        raise UsageError(f"control action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action != RATE:
        return value
    try:
        rate = float(value) if value is not None else math.nan
    except ValueError:
        rate = math.nan
    if not (rate > 0 and math.isfinite(rate)):
        raise UsageError(
            f"control rate needs a positive number of operations per second, got {value!r} "
            "(to stop writing for a while: `fsmigrate control pause`)"
        )
    return f"{rate:g}"


def send(
    store: Store,
    action: str,
    value: Optional[str] = None,
    *,
    holder: Optional[str] = None,
    operator: Optional[str] = None,
) -> tuple[Event, dict[str, Any]]:
    """Send one control event to the run holding the target's lock (or to lease `holder`):
    the event as recorded, and the lock document (who holds it). NothingToControl when no
    run holds the lock."""
    value = check_action(action, value)
    path = control_path(store)
    leases = Leases(store)
    for _ in range(10):
        lock = store.get(lock_path(store))
        if lock is None or (holder is not None and lock.get("holder") != holder):
            raise NothingToControl(store.target.describe())
        body = lock.to_dict()
        current = store.get(path)
        controls = Controls(holder=body.get("holder"))
        if current is not None:
            found = Controls.from_doc(current.to_dict())
            if found.holder == controls.holder:
                controls = found
        seq = max((e.seq for e in controls.events), default=0) + 1
        event = Event(
            seq=seq,
            action=action,
            value=value,
            operator=operator or operator_name(),
            host=socket.gethostname(),
            sent_at=rfc3339(dt.datetime.now(dt.timezone.utc), "milliseconds"),
        )
        controls.apply(event)
        if current is None:
            written = leases.create(path, controls.to_doc())
        else:
            written = leases.replace(path, controls.to_doc(), current.update_time)
        if written is not None:
            return event, body
    raise NothingToControl(store.target.describe())  # pragma: no cover - ten races lost


def clear(store: Store, holder: str) -> None:
    """Delete the control document of lease `holder` (its run is over); best effort."""
    doc = store.get(control_path(store))
    if doc is not None and doc.get("holder") == holder:
        Leases(store).delete(control_path(store), doc.update_time)


class Reader:
    """Reads the controls of one lease holder, at most every `interval` seconds; what is
    new since the last read comes back from `poll`."""

    def __init__(
        self,
        store: Store,
        holder: Optional[str],
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.holder = holder
        self.interval = interval
        self.clock = clock
        self.controls = Controls(holder=holder)
        self.seen = 0  # the newest event seq taken
        self._last: Optional[float] = None

    def poll(self, force: bool = False) -> list[Event]:
        now = self.clock()
        if self.holder is None or (
            not force and self._last is not None and now - self._last < self.interval
        ):
            return []
        self._last = now
        try:
            self.controls = read(self.store, self.holder)
        except FirestoreError:  # not answering: the controls as last read, until it does
            return []
        new = [e for e in self.controls.events if e.seq > self.seen]
        if new:
            self.seen = max(e.seq for e in new)
        return new


class SkipBudget:
    """--max-skip-ratio: the skipped (or failed) share of the last `window` operations
    settled, judged once at least `minimum` have settled."""

    def __init__(
        self, ratio: float, window: int = DEFAULT_WINDOW, minimum: int = MIN_JUDGED
    ) -> None:
        if not (0 <= ratio < 1):
            raise UsageError(f"--max-skip-ratio must be at least 0 and below 1, got {ratio}")
        self.ratio = ratio
        self.minimum = min(minimum, window)
        self._recent: deque[bool] = deque(maxlen=window)  # True: skipped or failed

    def add(self, ok: int, bad: int) -> None:
        self._recent.extend([False] * ok)
        self._recent.extend([True] * bad)

    def reset(self) -> None:
        self._recent.clear()

    def exceeded(self) -> Optional[str]:
        """Why the budget is spent, or None."""
        n = len(self._recent)
        if n < self.minimum:
            return None
        bad = sum(self._recent)
        if bad / n <= self.ratio:
            return None
        return (
            f"{bad} of the last {n} operations were skipped or failed ({bad / n:.0%}), past "
            f"--max-skip-ratio {self.ratio:g}: something else writes to these documents"
        )


class Controller:
    """The local runner's side of the controls (see the module docstring). `checkpoint`
    is called at each batch boundary of an apply, `settled` with each batch's outcome."""

    def __init__(
        self,
        reader: Reader,
        *,
        budget: Optional[SkipBudget] = None,
        publish: Optional[Callable[[dict[str, Any]], None]] = None,
        guard: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.reader = reader
        self.budget = budget
        self.publish = publish
        self.guard = guard
        self.sleep = sleep
        self._published: Optional[float] = None
        self._rate_shown: Optional[float] = None

    @property
    def holder(self) -> Optional[str]:
        return self.reader.holder

    @property
    def interval(self) -> float:
        return self.reader.interval

    @property
    def max_skip_ratio(self) -> Optional[float]:
        return self.budget.ratio if self.budget is not None else None

    def begin(self, run: Run, set_rate: Callable[[float], None]) -> None:
        """A new migration's run: the controls already in force apply to it too."""
        self._set_rate = set_rate
        if self.budget is not None:
            self.budget.reset()
        self.reader.poll(force=True)
        self.reader.seen = 0  # every migration's record lists what it runs under
        self._take(run, force=True)

    def settled(self, ok: int, bad: int) -> None:
        if self.budget is not None:
            self.budget.add(ok, bad)

    def checkpoint(self, run: Run, settle: Callable[[], None]) -> None:
        """Take what is new: a rate, a pause (the batches in flight settle first, then
        nothing is sent until `resume`), a stop (raises RunStopped once in-flight
        batches have settled); and the skip budget."""
        if self.budget is not None:
            why = self.budget.exceeded()
            if why is not None and self.reader.controls.stop is None:
                self.guard()  # (no lock, no control document: LockLost says why)
                send(self.reader.store, STOP, why, holder=self.holder, operator=BUDGET_OPERATOR)
                self._take(run, force=True)
        self._take(run, settle=settle)
        controls = self.reader.controls
        if controls.paused and controls.stop is None:
            settle()
            self._publish(run, force=True)
            while controls.paused and controls.stop is None:
                self.guard()
                self.sleep(self.interval)
                self._take(run)
                controls = self.reader.controls
                self._publish(run)
        if controls.stop is not None:
            settle()
            self._publish(run, force=True)
            raise RunStopped(run.revision, run.run_id, self._stopped_by())

    def take(self, run: Run) -> None:
        """Read the controls now and record what is new (a Beam run, after its pipeline)."""
        self._take(run, force=True)

    def finish(self, run: Run) -> None:
        """After the run (a Beam run's workers took the controls themselves): record the
        events sent while it ran; RunStopped when it was stopped."""
        self._take(run, force=True)
        if self.reader.controls.stop is not None:
            raise RunStopped(run.revision, run.run_id, self._stopped_by())

    @property
    def stopped(self) -> Optional[str]:
        return self.reader.controls.stop

    def _stopped_by(self) -> str:
        last = next((e for e in reversed(self.reader.controls.events) if e.action == STOP), None)
        if last is None:
            return f"stopped: {self.reader.controls.stop or 'asked to stop'}"
        why = f": {last.value}" if last.value else ""
        return f"stopped by {last.operator}@{last.host} at {last.sent_at}{why}"

    def _take(
        self, run: Run, force: bool = False, settle: Optional[Callable[[], None]] = None
    ) -> None:
        new = self.reader.poll(force=force)
        if settle is not None and any(e.action in (PAUSE, STOP) for e in new):
            settle()  # what was on the wire lands before the pause or stop is recorded as seen
        for event in new:
            if run.state.record_control(
                run.run_id,
                seq=event.seq,
                action=event.action,
                value=event.value,
                operator=event.operator,
                host=event.host,
                sent_at=event.sent_at,
            ):
                run.note(f"control: {event.describe()}")
        rate = self.reader.controls.rate
        if rate is not None and rate != self._rate_shown:
            self._rate_shown = rate
            self._set_rate(rate)
        self._publish(run)

    def _publish(self, run: Run, force: bool = False) -> None:
        if self.publish is None:
            return
        now = self.reader.clock()
        if not force and self._published is not None and now - self._published < PUBLISH_EVERY:
            return
        self._published = now
        rate = run.traffic.current() if run.traffic is not None else None
        self.publish(
            {
                "run_id": run.run_id,
                "revision": run.revision,
                "mode": run.mode,
                "operations": sum(run.counts.values()),
                "batches": run.batches,
                "rate": rate,
                "paused": self.reader.controls.paused,
                "stopping": self.reader.controls.stop,
                "elapsed_seconds": round(run.elapsed(), 1),
                "at": dt.datetime.now(dt.timezone.utc),
            }
        )
