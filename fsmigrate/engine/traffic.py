"""Traffic control for every write path: a hard cap, the 500/50/5 ramp, adaptive throttling.

Firestore's guidance for a database that serves live traffic: start at no more than 500
operations per second and raise the rate by 50% every 5 minutes, so the database has
time to split its key ranges before the load reaches them. The client's `BulkWriter` and
Beam's FirestoreIO (`RpcQosOptions`, `RpcQosImpl`) ramp that way; so does fsmigrate,
against a real project by default.

One `Limiter` is shared by every commit thread of a command, so its limit holds for all of
them together. It is a token bucket in its virtual-scheduling form (GCRA): a commit of n
operations reserves the next free slot and moves it n / rate seconds on, then waits for
its slot outside the lock. Over any window of W seconds, the operations released are at
most rate x W plus one commit; after an idle spell nothing accumulates (no burst).

The limit is the smallest of:
- `--max-rate`, a hard cap that nothing raises;
- the ramp: it starts at `Schedule.start` and grows by `factor` at the end of every
  `period` in which the traffic used at least half of it (an idle or slow migration does
  not earn the right to burst later, as in the client's BulkWriter);
- after throttling: a commit answered RESOURCE_EXHAUSTED, ABORTED or DEADLINE_EXCEEDED
  halves the limit (never below `MIN_RATE`), once per overload: the answers of commits
  sent before that cut do not cut again (with --concurrency N, N commits in flight fail
  together). From there the limit recovers along the ramp schedule, and only while the
  overload ratio of the last 2 minutes (operations attempted / accepted, the SRE book's
  "Handling Overload") is at most 1.25, like Beam's adaptive throttler.

Pure and thread-safe; the clock and sleep are injectable for tests. (The Firestore
client's own `RateLimiter` cannot serve: it does not block, is not thread-safe, reads the
wall clock and knows no throttling.)
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from fsmigrate.errors import UsageError

DEFAULT_START = 500.0  # operations per second
DEFAULT_FACTOR = 1.5  # +50% ...
DEFAULT_PERIOD = 300.0  # ... every 5 minutes
MIN_RATE = 10.0  # throttling never cuts below this (or below --max-rate)
CUT = 0.5  # what a throttling answer leaves of the limit
OVERLOAD_RATIO = 1.25  # the SRE book's K: recover only while attempted <= K x accepted
SAMPLE_SECONDS = 120.0  # the window of that ratio (Beam's samplePeriod)
SAMPLE_BUCKET = 10.0
THROTTLING_CODES = ("RESOURCE_EXHAUSTED", "ABORTED", "DEADLINE_EXCEEDED")
RAMP_ENV = "FSMIGRATE_RAMP"
_MAX_STEPS = 400  # 1.5 ** 400 is beyond any real rate; avoids overflow


@dataclass(frozen=True)
class Schedule:
    """The ramp: `start` operations per second, times `factor` every `period` seconds."""

    start: float = DEFAULT_START
    factor: float = DEFAULT_FACTOR
    period: float = DEFAULT_PERIOD

    def __post_init__(self) -> None:
        if not (self.start > 0 and self.factor >= 1 and self.period > 0):
            raise UsageError(
                f"a ramp needs start > 0, growth >= 0% and a period > 0, got "
                f"{self.start:g}/{(self.factor - 1) * 100:g}/"
                f"{self.period / 60:g}"
            )

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """'START/PERCENT/MINUTES', e.g. '500/50/5' (the default): 500 ops/s, +50% every
        5 minutes."""
        parts = text.strip().split("/")
        try:
            if len(parts) != 3:
                raise ValueError("three numbers expected")
            start, percent, minutes = (float(p) for p in parts)
        except ValueError as exc:
            raise UsageError(
                f"{RAMP_ENV}={text!r}: expected START/PERCENT/MINUTES such as 500/50/5 ({exc})"
            ) from exc
        if not all(math.isfinite(x) for x in (start, percent, minutes)):
            raise UsageError(f"{RAMP_ENV}={text!r}: numbers must be finite")
        return cls(start=start, factor=1 + percent / 100, period=minutes * 60)

    def rate_at(self, elapsed: float) -> float:
        """The limit `elapsed` seconds into a ramp whose traffic kept up with it."""
        steps = min(_MAX_STEPS, int(max(0.0, elapsed) // self.period))
        return self.start * self.factor**steps

    def seconds_for(self, ops: int, cap: Optional[float] = None) -> float:
        """How long `ops` operations take at this schedule (at most `cap` per second)."""
        left = float(ops)
        elapsed = 0.0
        step = 0
        while left > 0:
            rate = self.start * self.factor ** min(step, _MAX_STEPS)
            if cap is not None and rate >= cap:
                return elapsed + left / cap
            if left <= rate * self.period:
                return elapsed + left / rate
            left -= rate * self.period
            elapsed += self.period
            step += 1
        return elapsed

    def to_json(self) -> dict[str, float]:
        return {"start": self.start, "factor": self.factor, "period_seconds": self.period}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Schedule:
        return cls(float(obj["start"]), float(obj["factor"]), float(obj["period_seconds"]))

    def describe(self) -> str:
        return (
            f"{self.start:,.0f} ops/s, +{(self.factor - 1) * 100:g}% every {_duration(self.period)}"
        )


@dataclass(frozen=True)
class Limits:
    """What a command runs under. `ramp` None: no ramp; `adaptive`: cut the rate when the
    server pushes back (`recovery`: how it grows back when there is no ramp)."""

    max_rate: Optional[float] = None
    ramp: Optional[Schedule] = None
    adaptive: bool = False
    recovery: Schedule = field(default_factory=Schedule)

    @property
    def active(self) -> bool:
        """False: no limiter at all (the emulator without --max-rate or --ramp)."""
        return self.max_rate is not None or self.ramp is not None or self.adaptive

    def seconds_for(self, ops: int) -> Optional[float]:
        """How long an apply of `ops` operations takes at these limits; None: unlimited."""
        if self.ramp is not None:
            return self.ramp.seconds_for(ops, self.max_rate)
        if self.max_rate is not None:
            return ops / self.max_rate
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "max_rate": self.max_rate,
            "ramp": self.ramp.to_json() if self.ramp else None,
            "adaptive": self.adaptive,
            "recovery": self.recovery.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Limits:
        return cls(
            max_rate=obj.get("max_rate"),
            ramp=Schedule.from_json(obj["ramp"]) if obj.get("ramp") else None,
            adaptive=bool(obj.get("adaptive")),
            recovery=Schedule.from_json(obj["recovery"]) if obj.get("recovery") else Schedule(),
        )

    def describe(self) -> str:
        parts = []
        if self.ramp is not None:
            parts.append(f"ramp {self.ramp.describe()}")
        if self.max_rate is not None:
            parts.append(f"max {self.max_rate:,.0f} ops/s")
        if not parts:
            parts.append("no limit")
        if self.adaptive:
            parts.append("adaptive throttling")
        return ", ".join(parts)


def resolve(
    *,
    emulator: bool,
    max_rate: Optional[float] = None,
    ramp: Optional[bool] = None,
    ramp_start: Optional[float] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Limits:
    """The limits of a command: the ramp is on against a real project and off on the
    emulator unless `ramp` says otherwise (a `ramp_start` turns it on); FSMIGRATE_RAMP
    sets the schedule; adaptive throttling comes with any limit, and always against a real
    project. Bad values are a UsageError, raised before anything is written."""
    env = os.environ if environ is None else environ
    if max_rate is not None and not (max_rate > 0 and math.isfinite(max_rate)):
        raise UsageError(
            f"--max-rate must be a positive number of operations per second, got {max_rate}"
        )
    if ramp_start is not None and not (ramp_start > 0 and math.isfinite(ramp_start)):
        raise UsageError(
            f"--ramp-start must be a positive number of operations per second, got {ramp_start}"
        )
    if ramp is False and ramp_start is not None:
        raise UsageError("--ramp-start sets the ramp that --no-ramp turns off; pass one of them")
    schedule = Schedule.parse(env[RAMP_ENV]) if env.get(RAMP_ENV) else Schedule()
    if ramp_start is not None:
        schedule = replace(schedule, start=float(ramp_start))
    on = ramp if ramp is not None else (not emulator or ramp_start is not None)
    return Limits(
        max_rate=float(max_rate) if max_rate is not None else None,
        ramp=schedule if on else None,
        adaptive=on or max_rate is not None or not emulator,
        recovery=schedule,
    )


@dataclass(frozen=True)
class Ticket:
    """A commit's admission: its operations and the cut generation it was sent under."""

    ops: int
    generation: int


@dataclass
class Stats:
    """What one run met: throttling answers (by status code), cuts of the limit, the
    lowest limit in force, and the wall time during which commits were held back."""

    throttle_events: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    cuts: int = 0
    lowest_rate: Optional[float] = None
    final_rate: Optional[float] = None
    waited_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "throttle_events": self.throttle_events,
            "by_code": dict(self.by_code),
            "cuts": self.cuts,
            "lowest_rate": _rounded(self.lowest_rate),
            "final_rate": _rounded(self.final_rate),
            "waited_seconds": round(self.waited_seconds, 3),
        }


class Limiter:
    """The token bucket every commit waits on (see the module docstring)."""

    def __init__(
        self,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._growth = limits.ramp or limits.recovery
        self._limit = limits.ramp.start if limits.ramp else math.inf  # before the cap
        self._cap = limits.max_rate if limits.max_rate is not None else math.inf
        self._floor = min(MIN_RATE, self._cap)
        self._period_start: Optional[float] = None  # the ramp starts with the traffic
        self._used = 0.0
        self._next_free: Optional[float] = None
        self._waited_until = -math.inf
        self._generation = 0
        self._samples: deque[list[float]] = deque()  # [bucket, attempted, accepted]
        self._recent: deque[tuple[float, int]] = deque()  # admissions of the last seconds
        self.stats = Stats()

    # ---- the commit path ------------------------------------------------------------

    def acquire(self, ops: int) -> Ticket:
        """Wait until `ops` operations may be sent; the ticket goes back to `done`."""
        with self._lock:
            now = self._clock()
            if self._period_start is None:
                self._period_start = now
            rate = self._rate(now)
            start = now if self._next_free is None else max(now, self._next_free)
            self._next_free = start + (ops / rate if rate < math.inf else 0.0)
            self._used += ops
            if rate < math.inf:
                low = self.stats.lowest_rate
                self.stats.lowest_rate = rate if low is None else min(low, rate)
            else:
                self._recent.append((now, ops))
                while self._recent and self._recent[0][0] < now - 5.0:
                    self._recent.popleft()
            if start > now:  # wall time held back (the union over concurrent commits)
                self.stats.waited_seconds += start - max(now, self._waited_until)
                self._waited_until = start
            ticket = Ticket(ops, self._generation)
        if start > now:
            self._sleep(start - now)
        return ticket

    def done(self, ticket: Ticket, code: Optional[str] = None) -> None:
        """The commit's answer: accepted (`code` None) or a status code; a throttling
        code cuts the limit (once per overload)."""
        with self._lock:
            now = self._clock()
            self._sample(now, ticket.ops, accepted=code is None)
            if code is None or code not in THROTTLING_CODES:
                return
            self.stats.throttle_events += 1
            self.stats.by_code[code] = self.stats.by_code.get(code, 0) + 1
            if not self.limits.adaptive or ticket.generation != self._generation:
                return  # sent before the last cut: that cut already answered this overload
            current = min(self._limit, self._cap)
            if current == math.inf:
                current = self._observed(now)
            self._limit = max(self._floor, current * CUT)
            self._generation += 1
            self.stats.cuts += 1
            self._period_start, self._used = now, 0.0  # recovery starts from here
            low = self.stats.lowest_rate
            rate = min(self._limit, self._cap)
            self.stats.lowest_rate = rate if low is None else min(low, rate)

    def set_cap(self, rate: float) -> None:
        """A new hard cap (`fsmigrate control rate N`), in place of --max-rate from now on;
        the ramp and throttling still bound it."""
        with self._lock:
            self._cap = float(rate)
            self._floor = min(MIN_RATE, self._cap)
            self.limits = replace(self.limits, max_rate=float(rate))
            if self._next_free is not None:  # a slower rate counts from now, not from
                self._next_free = min(self._next_free, self._clock())  # the old slots

    def current(self) -> Optional[float]:
        """The limit now (operations per second); None when unlimited."""
        with self._lock:
            rate = self._rate(self._clock())
        return rate if rate < math.inf else None

    def begin_run(self) -> None:
        """Start a run's statistics (the rate itself carries over between runs)."""
        with self._lock:
            self.stats = Stats()
            rate = min(self._limit, self._cap)
            self.stats.lowest_rate = rate if rate < math.inf else None

    def report(self) -> dict[str, Any]:
        """The limits and this run's statistics, as recorded with the run."""
        with self._lock:
            rate = min(self._limit, self._cap)
            self.stats.final_rate = rate if rate < math.inf else None
            return {**self.limits.to_json(), **self.stats.to_json()}

    # ---- inside the lock ------------------------------------------------------------

    def _rate(self, now: float) -> float:
        self._advance(now)
        return min(self._limit, self._cap)

    def _advance(self, now: float) -> None:
        """Grow the limit at the end of each period the traffic used at least half of,
        while the recent overload ratio allows it."""
        if self._period_start is None:
            return
        periods = int((now - self._period_start) // self._growth.period)
        if periods <= 0:
            return
        rate = min(self._limit, self._cap)
        if (
            self._limit < self._cap
            and rate < math.inf
            and self._used >= 0.5 * rate * self._growth.period
            and not self._overloaded(now)
        ):
            self._limit = min(self._cap, self._limit * self._growth.factor)
        self._period_start += periods * self._growth.period  # idle periods earn nothing
        self._used = 0.0

    def _sample(self, now: float, ops: int, accepted: bool) -> None:
        bucket = now // SAMPLE_BUCKET
        if not self._samples or self._samples[-1][0] != bucket:
            self._samples.append([bucket, 0.0, 0.0])
        self._samples[-1][1] += ops
        if accepted:
            self._samples[-1][2] += ops
        oldest = bucket - SAMPLE_SECONDS // SAMPLE_BUCKET
        while self._samples and self._samples[0][0] <= oldest:
            self._samples.popleft()

    def _overloaded(self, now: float) -> bool:
        oldest = now // SAMPLE_BUCKET - SAMPLE_SECONDS // SAMPLE_BUCKET
        attempted = sum(s[1] for s in self._samples if s[0] > oldest)
        accepted = sum(s[2] for s in self._samples if s[0] > oldest)
        return attempted > OVERLOAD_RATIO * accepted

    def _observed(self, now: float) -> float:
        """The rate of the last seconds, for the first cut of an unlimited limiter."""
        if not self._recent:
            return self._growth.start
        span = max(1.0, now - self._recent[0][0])
        return max(self._floor, sum(n for _, n in self._recent) / span)


def make(limits: Limits) -> Optional[Limiter]:
    """A limiter for `limits`, or None when nothing limits (no overhead at all)."""
    return Limiter(limits) if limits.active else None


def describe_stats(traffic: Mapping[str, Any]) -> str:
    """One line for reports: the limits and what throttling did."""
    limits = Limits.from_json(traffic)
    text = limits.describe()
    if "throttle_events" not in traffic:
        return text
    events = traffic["throttle_events"]
    if events:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(traffic["by_code"].items()))
        text += f"; {events} throttling event(s) ({codes}), {traffic['cuts']} cut(s)"
    else:
        text += "; no throttling"
    if traffic.get("lowest_rate") is not None:
        text += f"; lowest limit {traffic['lowest_rate']:,.0f} ops/s"
    return text + f"; waited {traffic['waited_seconds']:,.1f} s"


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
